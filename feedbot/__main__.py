"""``python -m feedbot`` runs the command line."""

from __future__ import annotations

from feedbot.commands import main

raise SystemExit(main())
