"""``python -m feedbot`` runs the command line."""

from __future__ import annotations

from feedbot.commands import main

if __name__ == "__main__":  # not when a worker process imports it (multiprocessing's spawn)
    raise SystemExit(main())
