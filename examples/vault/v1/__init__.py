"""Vault 1.0.0: the code that differs between releases (compare with ``examples/vault/v2``)."""
