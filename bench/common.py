"""Shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path


def write_table(lines: list[str], out: str | Path) -> None:
    """Write a benchmark's Markdown lines to ``out`` and echo them."""
    text = "\n".join(lines) + "\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    print(text)


def cpu_description() -> str:
    """This machine's CPU model, core count and whether it has native bf16 (figures depend on it)."""
    import os

    from moclip.precision import native_bf16_cpu

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {'native' if native_bf16_cpu() else 'no native'} bf16"
