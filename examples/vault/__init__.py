"""The Gringotts vault: a small instrumented application for trying feedbot on real traces.

Two releases (``v1/``, ``v2/``) over shared code; see ``examples/README.md`` for how to run it.
"""
