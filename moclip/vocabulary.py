"""A zero-shot vocabulary: the class names a user labels an archive with, each with optional prompt text.

Settings-level (no torch): the job parameters check a vocabulary when they are made (``moclip.params``); its text
embeddings are made by ``moclip.zeroshot``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def humanize(name: str) -> str:
    """Class name -> words: ``ApplyEyeMakeup`` -> "apply eye makeup", ``brush_hair`` -> "brush hair"."""
    text = _CAMEL.sub(" ", name.strip())
    text = re.sub(r"[_\-\s]+", " ", text)
    return text.strip().lower()


@dataclass(frozen=True)
class Vocabulary:
    """Class names for zero-shot labelling, each with optional prompt text of its own (else the template set's
    prompts filled with the name). Written ``name`` or ``name: prompt; another prompt`` (``parse``)."""

    names: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]  # per class: its own prompts, () for the template set's

    @classmethod
    def parse(cls, entries: list[str]) -> Vocabulary:
        """Entries ``name`` or ``name: prompt; prompt``; refuses an empty list, a single class (its softmax is
        always 1), an empty name and a repeated one: the same words once turned into prompts ("Diving" and
        "diving", "BrushHair" and "brush_hair" give CLIP the same text), or the same prompts."""
        names: list[str] = []
        prompts: list[tuple[str, ...]] = []
        seen: dict[object, str] = {}
        for entry in entries:
            name, _, text = str(entry).partition(":")
            name = name.strip()
            if not name:
                raise ValueError(f"a class without a name: {entry!r}")
            own = tuple(p.strip() for p in text.split(";") if p.strip())
            for key in {humanize(name) if not own else name.lower(), name.lower(), own or None} - {None}:
                if key in seen:
                    raise ValueError(f"class {name!r} is in the vocabulary twice (as {seen[key]!r} too: CLIP would "
                                     "get the same text for both)")
                seen[key] = name
            names.append(name)
            prompts.append(own)
        if not names:
            raise ValueError("the vocabulary is empty: give at least one class name")
        if len(names) < 2:
            raise ValueError(f"one class ({names[0]!r}) is no choice: give at least two class names")
        return cls(tuple(names), tuple(prompts))

    @property
    def own_prompts(self) -> dict[str, tuple[str, ...]]:
        return {n: p for n, p in zip(self.names, self.prompts) if p}

    def digest(self, templates: str) -> str:
        """10 hex digits naming the vocabulary (names, their prompts, the template set)."""
        blob = json.dumps([list(self.names), [list(p) for p in self.prompts], templates])
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def read_vocabulary_file(path: str | Path) -> list[str]:
    """A file of class names, one per line (``name`` or ``name: prompt; prompt``); blank lines and lines starting
    with ``#`` are left out."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the class list ({e})") from e
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
