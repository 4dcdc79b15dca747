"""Block Kit as plain text for a terminal: what ``feedbot feedback`` prints (pure: no I/O).

Slack's mrkdwn is undone as far as a terminal needs: ``*bold*`` loses its stars, ``<url|label>``
becomes ``label (url)``, and the ``&amp;``, ``&lt;``, ``&gt;`` escapes are turned back. Inline
code keeps its backticks, which read well as they are. Blocks are separated by a blank line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_BARE_LINK = re.compile(r"<((?:https?|mailto):[^<>|]+)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
RULE = "─" * 60


def mrkdwn_text(text: str) -> str:
    """One mrkdwn string as plain text (see the module docstring)."""
    text = _LINK.sub(lambda m: f"{m[2]} ({m[1]})", text)
    text = _BARE_LINK.sub(lambda m: m[1], text)
    text = _BOLD.sub(lambda m: m[1], text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def blocks_text(blocks: Sequence[Mapping[str, Any]], fallback: str = "") -> str:
    """Sections, context lines, headers, dividers and buttons as text; ``fallback`` if none.

    Args:
        blocks: Block Kit blocks, as sent to Slack.
        fallback: the message's ``text``, printed when no block has text.

    Returns:
        The text, ending with a newline.
    """
    parts = [part for part in (_block(b) for b in blocks) if part]
    body = "\n\n".join(parts) if parts else mrkdwn_text(fallback)
    return body.rstrip("\n") + "\n"


def _block(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "divider":
        return RULE
    if kind == "context":
        return "  ".join(_text(e) for e in block.get("elements", []) if _text(e))
    if kind == "actions":
        labels = [_text(e.get("text") or {}) for e in block.get("elements", [])]
        return "  ".join(f"[{label}]" for label in labels if label)
    lines = [_text(block.get("text") or {})]
    lines += [_text(f) for f in block.get("fields", [])]
    accessory = block.get("accessory") or {}
    if accessory.get("type") == "button" and _text(accessory.get("text") or {}):
        lines.append(f"[{_text(accessory['text'])}]")
    return "\n".join(line for line in lines if line)


def _text(element: Mapping[str, Any]) -> str:
    text = str(element.get("text") or "")
    return mrkdwn_text(text) if element.get("type") == "mrkdwn" else text
