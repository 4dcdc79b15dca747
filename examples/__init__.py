"""Example applications that send traces to feedbot (not part of the installed package)."""
