"""Vault 2.0.0: the code that differs between releases (compare with ``examples/vault/v1``)."""
