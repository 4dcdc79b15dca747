"""An HTML page that shows the delivered messages roughly as Slack would (pure: no I/O).

Block Kit blocks are drawn when a message has them (header, section with text, fields and an
accessory button, context, divider, actions with their buttons); otherwise its text. Every
piece of text is escaped: the page must be safe to open whatever the traces said (an exception
message can hold ``<script>``).
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from feedbot.demo.recorder import Delivered
from feedbot.demo.thread import Thread, threads
from feedbot.notify.base import Attachment

#: Width of an image in the thread, as Slack shows a large one on a desktop.
FILE_WIDTH = 480

_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
_STYLES = (
    (re.compile(r"```(.+?)```", re.S), r"<pre>\1</pre>"),
    (re.compile(r"`([^`\n]+)`"), r"<code>\1</code>"),
    (re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])"), r"<b>\1</b>"),
    (re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])"), r"<i>\1</i>"),
    (re.compile(r"(?<![\w~])~([^~\n]+)~(?![\w~])"), r"<s>\1</s>"),
)
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;background:#f8f8f8;margin:2em}
h1{font-size:1.3em} .thread{background:#fff;border:1px solid #ddd;border-radius:8px;
padding:1em;margin:1em 0;max-width:52em} .msg{margin:.6em 0} .who{font-weight:bold}
.reply{margin-left:2em;border-left:3px solid #e0e0e0;padding-left:1em}
.text{white-space:pre-wrap} pre{background:#f4f4f4;padding:.5em;overflow-x:auto}
.context{color:#666;font-size:.85em} .fields{display:grid;grid-template-columns:1fr 1fr;gap:.3em}
.button{display:inline-block;border:1px solid #bbb;border-radius:4px;padding:.2em .7em;
margin-right:.4em;color:#333;text-decoration:none;white-space:nowrap}
.edited{color:#999;font-size:.8em} code{background:#f4f4f4}
.with-accessory{display:flex;justify-content:space-between;align-items:flex-start;gap:1em}
.text,.context,.with-accessory{margin:.3em 0}
.file img{border:1px solid #ddd;border-radius:6px;max-width:100%;height:auto}
.file-title{color:#666;font-size:.85em;margin:.2em 0}
"""


def mrkdwn(text: str) -> str:
    """Slack mrkdwn as safe HTML: links, bold, italics, strike, code; everything escaped."""
    out, last = [], 0
    for match in _LINK.finditer(text):
        out.append(_styled(text[last : match.start()]))
        url, label = html.unescape(match[1]), match[2]
        shown = _styled(label) if label else html.escape(url)
        safe = url if url.startswith(("http://", "https://")) else "#"
        out.append(f'<a href="{html.escape(safe, quote=True)}">{shown}</a>')
        last = match.end()
    out.append(_styled(text[last:]))
    return "".join(out)


def _styled(text: str) -> str:
    # Slack escapes &, < and > itself; undo that, then escape everything for HTML.
    escaped = html.escape(html.unescape(text), quote=False)
    for pattern, replacement in _STYLES:
        escaped = pattern.sub(replacement, escaped)
    return escaped


def block_html(block: Mapping[str, Any]) -> str:
    """One Block Kit block; unknown types show as their escaped JSON."""
    kind = block.get("type")
    if kind == "header":
        return f"<h3>{html.escape(_plain(block.get('text')))}</h3>"
    if kind == "divider":
        return "<hr>"
    if kind == "section":
        return _section(block)
    if kind == "context":
        parts = [_text_html(e) for e in block.get("elements", []) if isinstance(e, Mapping)]
        return f'<div class="context">{" · ".join(parts)}</div>'
    if kind == "actions":
        elements = [e for e in block.get("elements", []) if isinstance(e, Mapping)]
        return "<div>" + "".join(_button(e) for e in elements) + "</div>"
    return f"<pre>{html.escape(json.dumps(block, ensure_ascii=False, indent=1))}</pre>"


def _button(element: Mapping[str, Any]) -> str:
    """A button as Slack draws it: its label, a link when it opens a URL."""
    label = html.escape(_plain(element.get("text")))
    url = str(element.get("url") or "")
    if url.startswith(("http://", "https://")):
        return f'<a class="button" href="{html.escape(url, quote=True)}">{label}</a>'
    return f'<span class="button">{label}</span>'


def _section(block: Mapping[str, Any]) -> str:
    """Text and fields, with the accessory (an "Expected" button) on the right as in Slack."""
    out = ""
    if isinstance(block.get("text"), Mapping):
        out += f'<div class="text">{_text_html(block["text"])}</div>'
    fields = [f for f in block.get("fields", []) if isinstance(f, Mapping)]
    if fields:
        out += '<div class="fields">' + "".join(f"<div>{_text_html(f)}</div>" for f in fields)
        out += "</div>"
    accessory = block.get("accessory")
    if isinstance(accessory, Mapping) and accessory.get("type") == "button":
        return f'<div class="with-accessory"><div>{out}</div>{_button(accessory)}</div>'
    return out


def _text_html(obj: Mapping[str, Any]) -> str:
    text = str(obj.get("text", ""))
    return mrkdwn(text) if obj.get("type") == "mrkdwn" else html.escape(text)


def _plain(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, Mapping) else ""


def message_html(text: str, blocks: Sequence[Mapping[str, Any]]) -> str:
    """A message body: its blocks, or its text when it has none."""
    if blocks:
        return "".join(block_html(b) for b in blocks)
    return f'<div class="text">{html.escape(text)}</div>'


def file_html(file: Attachment, *, alt: str) -> str:
    """An uploaded image as Slack shows it in a thread: its title above it, inline (a data URL,
    so the page stays one file)."""
    data = base64.b64encode(file.data).decode("ascii")
    return (
        f'<div class="file"><div class="file-title">{html.escape(file.title)}</div>'
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}" '
        f'width="{FILE_WIDTH}"></div>'
    )


def _thread_html(thread: Thread) -> str:
    edited = '<span class="edited">(edited: status line)</span>' if thread.updated else ""
    parts = [
        '<div class="thread"><div class="msg"><span class="who">feedbot</span> '
        f"{edited}{message_html(thread.head, thread.head_blocks)}</div>"
    ]
    for reply in thread.replies:
        message = reply.message
        if message.file is not None:
            body = file_html(message.file, alt=message.text)
        else:
            body = message_html(message.text, message.blocks)
        parts.append(f'<div class="msg reply"><span class="who">feedbot</span>{body}</div>')
    parts.append("</div>")
    return "".join(parts)


def page(delivered: Sequence[Delivered], *, title: str, recipient: str) -> str:
    """The whole preview page, every thread in the order it started."""
    body = "".join(_thread_html(t) for t in threads(delivered))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>Direct messages to <b>{html.escape(recipient)}</b>, as delivered.</p>"
        f"{body}</body></html>\n"
    )
