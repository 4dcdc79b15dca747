"""feedbot: post-deploy feedback from production traces, delivered to the developer who shipped."""

from __future__ import annotations

__version__ = "0.1.0"
