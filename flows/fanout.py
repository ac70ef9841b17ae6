"""One fan-out for every flow: tasks submitted on the flow's Dask task runner (only to workers that have the
``resources`` they need), their outcomes taken as they finish, and the progress shown three ways: a bar in a
terminal, a line every few seconds without one (``moclip.progress``), and a Prefect progress artifact.

    with FanOut(n_videos, "index", "video", f"Indexing {n_videos} videos", resources) as fan:
        for shard in shards:
            fan.submit(shard, index_shard_task, shard.videos, shard.name, target)
        for shard, value in fan.outcomes():   # value: the task's result, or the exception it raised
            ...
            fan.advance(len(shard.videos))
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from flows.cluster import needs
from moclip.progress import Progress


class FanOut:
    """Tasks in flight, each for one work item; ``outcomes`` yields (item, result or exception) as they finish, and
    includes tasks submitted while it runs (a retry); ``advance`` moves the progress on."""

    def __init__(self, total: int, name: str, unit: str, description: str,
                 resources: dict[str, float] | None = None) -> None:
        self.total, self.resources = total, dict(resources or {})
        self.bar = Progress(total, name, unit=unit)
        self.artifact = create_progress_artifact(0.0, description=description)
        self.pending: dict[Any, Hashable] = {}
        self.retried: set[Hashable] = set()  # items tried a second time (the caller's bookkeeping)

    def __enter__(self) -> FanOut:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def submit(self, item: Any, task: Any, *args: Any) -> None:
        """Run ``task(*args)`` on a worker, for ``item``."""
        with needs(self.resources):
            self.pending[task.submit(*args)] = item

    def outcomes(self) -> Iterator[tuple[Any, Any]]:
        """(item, the task's result or the exception it raised), in the order they finish."""
        while self.pending:
            for fut in as_completed(list(self.pending)):
                item = self.pending.pop(fut)
                try:
                    value = fut.result()
                except Exception as exc:  # noqa: BLE001 - the caller decides: retry, report, or raise
                    value = exc
                yield item, value

    def advance(self, n: int) -> None:
        self.bar.update(n)
        update_progress_artifact(self.artifact, 100.0 * self.bar.done / max(self.total, 1))


def error_text(exc: BaseException, limit: int = 500) -> str:
    """``Type: message``, cut to ``limit`` characters: how a failed task is reported."""
    return f"{type(exc).__name__}: {exc}"[:limit]
