"""A small Markdown writer for every summary moclip writes (the report, the index and label summaries).

Each function returns Markdown as an :class:`Md` string. Any other value given to them is plain text and is
escaped: newlines become spaces, ``& < >`` HTML entities (so no raw HTML reaches a renderer) and Markdown syntax
characters are backslashed, so a class name like ``<script>`` or ``a|b`` shows as written and cannot break a
table. An ``Md`` value (from :func:`code`, :func:`join`, ...) is inserted as it is.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote

WARNING_SIGN = "⚠"
_SPECIAL = re.compile(r"([\\`*_\[\]|#])")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)((?:\\\\)*)\|")  # a "|" after an even number of backslashes


class Md(str):
    """Markdown source, inserted without escaping."""


def _flat(text: object) -> str:
    return " ".join(str(text).splitlines())


def inline(text: object) -> Md:
    """``text`` as inline Markdown: escaped unless it is :class:`Md` already (then only flattened to one line)."""
    if isinstance(text, Md):
        return Md(_flat(text))
    t = _flat(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Md(_SPECIAL.sub(r"\\\1", t))


def code(text: object) -> Md:
    """A code span (shown verbatim, monospace): URLs, commands, hashes, ids."""
    t = _flat(text)
    fence = "`" * (max((len(m) for m in re.findall(r"`+", t)), default=0) + 1)
    pad = " " if t.startswith("`") or t.endswith("`") else ""
    return Md(f"{fence}{pad}{t}{pad}{fence}")


def bold(text: object) -> Md:
    """Strong emphasis."""
    return Md(f"**{inline(text)}**")


def join(parts: Iterable[object], sep: str = "") -> Md:
    """Inline pieces (text or Markdown) joined by the plain-text separator ``sep``."""
    return Md(inline(sep).join(inline(p) for p in parts))


def heading(level: int, text: object) -> Md:
    """An ATX heading (``#`` x level)."""
    return Md(f"{'#' * level} {inline(text)}")


def paragraph(text: object) -> Md:
    """A paragraph (one line)."""
    return inline(text)


def note(text: object) -> Md:
    """Small print: an italic paragraph."""
    return Md(f"*{inline(text)}*")


def warning(text: object) -> Md:
    """A warning the reader must not miss: a bold blockquote starting with a warning sign."""
    return Md(f"> **{WARNING_SIGN} {inline(text)}**")


def _cell(text: object) -> str:
    """A table cell: like :func:`inline`, and no "|" of an ``Md`` value (e.g. in a code span) splits the cell."""
    return _UNESCAPED_PIPE.sub(r"\1\\|", inline(text)) if isinstance(text, Md) else inline(text)


def table(headers: Sequence[object], rows: Iterable[Sequence[object]], numeric: Sequence[bool] | None = None) -> Md:
    """A GitHub-flavoured table; columns marked ``numeric`` are right-aligned."""
    align = ["---:" if n else "---" for n in (numeric or [False] * len(headers))]
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return Md("\n".join(lines))


def bullets(items: Iterable[object]) -> Md:
    """A bullet list, one item per value."""
    return Md("\n".join(f"- {inline(i)}" for i in items))


def key_values(items: Iterable[tuple[object, object]]) -> Md:
    """A list of ``key: value`` lines, the keys bold."""
    return Md("\n".join(f"- **{inline(k)}:** {inline(v)}" for k, v in items))


def image(alt: object, src: str) -> Md:
    """An image; ``src`` is a relative path or URL (percent-encoded here)."""
    return Md(f"![{inline(alt)}]({quote(src)})")


def details(summary: object, blocks: Iterable[str | None]) -> Md:
    """A collapsed section (HTML ``<details>``, which GitHub renders; :mod:`moclip.report.page` too)."""
    inner = "\n\n".join(b for b in blocks if b)
    return Md(f"<details>\n<summary>{html.escape(_flat(summary))}</summary>\n\n{inner}\n\n</details>")


def document(blocks: Iterable[str | None]) -> str:
    """Blocks separated by blank lines, ending in a newline; ``None`` and empty blocks are left out."""
    return "\n\n".join(b for b in blocks if b) + "\n"
