"""Shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path


def write_table(lines: list[str], out: str | Path) -> None:
    """Write a benchmark's Markdown lines to ``out`` and echo them."""
    text = "\n".join(lines) + "\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    print(text)
