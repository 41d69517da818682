"""Text from users' data (column, class and file names, reasons) made safe for where it is shown.

Names reach three interpreters: rich markup on the terminal (``price[/usd]`` is a closing tag,
``weight[kg]`` a style), Markdown in Prefect artifacts (a triple backtick ends a code block,
raw HTML passes), and the terminal itself (escape sequences). Credentials in URIs must not be
printed or logged at all.
"""

from __future__ import annotations

import html
import re

from rich.markup import escape as _rich_escape

# C0 controls but tab and newline, DEL, and C1 controls (ESC starts terminal sequences).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# scheme://user:password@host  ->  scheme://user:***@host
_USERINFO = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
# password=..., secret=..., token=... in query strings
_SECRET_PARAM = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|access_key|secret_key)=)[^&;\s]*", re.IGNORECASE)


def visible(text: str) -> str:
    """Control characters written as escapes (``\\x1b``), so nothing reaches the terminal as a
    command."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def safe(text: str) -> str:
    """For rich: control characters made visible and markup escaped, so ``weight[kg]`` prints
    as itself."""
    return _rich_escape(visible(text))


def redact(text: str) -> str:
    """URIs with their credentials replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\g<head>***", _USERINFO.sub(r"\g<head>***@", str(text)))


def markdown_text(text: str) -> str:
    """For running Markdown text: HTML escaped and Markdown's punctuation backslash-escaped."""
    escaped = html.escape(visible(text), quote=False)
    return re.sub(r"([\\`*_{}\[\]()#+!|~>])", r"\\\1", escaped).replace("\n", " ")


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def markdown_inline(text: str) -> str:
    """Inline code that its content cannot end (CommonMark: a longer backtick string)."""
    text = visible(text).replace("\n", " ")
    fence = "`" * (_longest_backticks(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_code(text: str) -> str:
    """A fenced code block that its content cannot end: the fence is longer than any run of
    backticks inside."""
    text = visible(text)
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return f"{fence}\n{text}\n{fence}"
