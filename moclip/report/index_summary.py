"""What an index run did: a typed summary (machine: the flow's result, the manifest's run history, ``--json``) and
its Markdown (people: the index-summary artifact)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from moclip.dataset.incremental import IndexPlan
from moclip.indexing.shard import ShardResult
from moclip.report import RANDOM_CLIP_WARNING
from moclip.report import markdown as md


class Failure(BaseModel):
    video_id: str
    reason: str


class CrashedShard(BaseModel):
    """A shard that failed twice (e.g. the disk filled up): its videos are not in the dataset; the next run
    indexes them again."""

    shard: str
    video_ids: list[str]
    error: str


class IsolatedRetry(BaseModel):
    """A shard whose first try failed (its worker died or hung), retried with each video in its own process."""

    shard: str
    error: str | None
    culprits: list[str] = Field(description="videos whose decoder crashed or hung")


class Changes(BaseModel):
    new: list[str] = []
    reindexed: list[str] = []
    deleted: list[str] = []
    restored: list[str] = []


class Quarantined(BaseModel):
    """An unreadable file moved aside (``_quarantine/``); a shard's videos were indexed again by the same run."""

    file: str
    reason: str
    moved_to: str


class IndexSummary(BaseModel):
    """One index run: counts, where the output went, what changed and what failed."""

    out: str
    corpus_videos: int
    new: int
    reindexed: int
    unchanged: int
    deleted: int
    indexed_ok: int
    failed: int
    failures: list[Failure]
    crashed_shards: list[CrashedShard]
    isolated_retries: list[IsolatedRetry]
    bytes_written: int
    frames_decoded: int
    images_embedded: int
    workers: list[str]
    changes: Changes
    worker_seconds: dict[str, float]
    # (worker, start, end, videos) per shard, wall clock in epoch seconds: where a run's time went
    shard_timeline: list[tuple[str, float, float, int]]
    wall_seconds: float
    settings_hash: str
    clip_weights_id: str
    clip_random_init: bool
    restored: int = 0  # deleted videos back unchanged: their kept features are current again, nothing decoded
    quarantined: list[Quarantined] = []
    skipped_files: dict[str, dict] = Field(default_factory=dict, description="files under the root not listed, "
                                                                             "by reason: count and examples")
    failed_total: int = 0  # failed rows in the dataset after this run (this run's and earlier ones that stand)
    settings_changed: int = 0  # videos re-indexed because they had other feature settings
    notes: list[str] = []  # settings taken from the dataset's manifest (IndexParams.with_recorded)
    run_plan: str = ""  # how the run used the machines (moclip.runplan.RunPlan.describe)

    @property
    def complete(self) -> bool:
        """Whether the run did all its work: every planned video has a row (a failed video's row says why)."""
        return not self.crashed_shards

    def incomplete_message(self) -> str:
        """What was not done and what to run: the CLI's error and the Prefect flow run's Failed state message."""
        n = sum(len(c.video_ids) for c in self.crashed_shards)
        return (f"{len(self.crashed_shards)} shards ({n} videos) were not written to {self.out}; rerun the same "
                "command (or flow run) to index them")

    def for_manifest(self, cap: int = 20) -> dict:
        """As kept in the manifest's run history: counts, and at most ``cap`` crashed / retried shards (without
        their video ids), so its size does not grow with the corpus. The lists are in ``details()``."""
        out = self.model_dump(mode="json", exclude={"failures", "changes", "shard_timeline", "crashed_shards",
                                                    "isolated_retries", "quarantined"})
        out["quarantined"] = [q.model_dump() for q in self.quarantined[:cap]]
        out["crashed_shards"] = [{"shard": c.shard, "n_videos": len(c.video_ids), "error": c.error}
                                 for c in self.crashed_shards[:cap]]
        out["n_crashed_shards"] = len(self.crashed_shards)
        out["isolated_retries"] = [r.model_dump() for r in self.isolated_retries[:cap]]
        out["n_isolated_retries"] = len(self.isolated_retries)
        return out

    def details(self) -> dict:
        """What the run did, video by video: new, changed and deleted ids, failures, crashed shards' videos."""
        return self.model_dump(mode="json", include={"changes", "failures", "crashed_shards", "isolated_retries"})


def summarize(
    *, n_corpus: int, plan: IndexPlan, results: list[ShardResult], crashed: list[dict], wall_s: float,
    out: str, settings_hash: str, clip_weights_id: str, clip_random: bool, skipped_files: dict | None = None,
    notes: list[str] | None = None, run_plan: str = "",
) -> IndexSummary:
    secs: dict[str, float] = {}
    reindexed = set(plan.reindexed)
    for res in results:
        for k, v in res.seconds.items():
            secs[k] = secs.get(k, 0.0) + v
    failures = [Failure(video_id=v, reason=r) for res in results for v, r in res.failures]
    return IndexSummary(
        out=out, corpus_videos=n_corpus, new=plan.new, reindexed=len(plan.reindexed), unchanged=plan.unchanged,
        deleted=len(plan.deleted), indexed_ok=sum(r.n_ok for r in results), failed=len(failures),
        failures=failures, crashed_shards=crashed,
        isolated_retries=[IsolatedRetry(shard=r.shard, error=r.first_error, culprits=r.culprits)
                          for r in results if r.first_error is not None],
        bytes_written=sum(r.bytes_written for r in results), frames_decoded=sum(r.frames_decoded for r in results),
        images_embedded=sum(r.images_embedded for r in results), workers=sorted({r.worker for r in results}),
        changes=Changes(new=sorted(v["video_id"] for v in plan.to_index if v["video_id"] not in reindexed),
                        reindexed=sorted(plan.reindexed), deleted=sorted(plan.deleted),
                        restored=sorted(plan.restored)),
        worker_seconds={k: round(v, 3) for k, v in secs.items()},
        shard_timeline=sorted((r.worker, r.started_at, r.ended_at, r.n_ok + r.n_failed) for r in results),
        wall_seconds=round(wall_s, 3), settings_hash=settings_hash, clip_weights_id=clip_weights_id,
        clip_random_init=clip_random, restored=len(plan.restored),
        quarantined=[Quarantined(**q) for q in plan.quarantined], skipped_files=skipped_files or {},
        failed_total=plan.failed_kept + len(failures), settings_changed=plan.settings_changed, notes=notes or [],
        run_plan=run_plan,
    )


def one_line(s: IndexSummary) -> str:
    crashed = sum(len(c.video_ids) for c in s.crashed_shards)
    retried = s.isolated_retries
    culprits = sorted(v for r in retried for v in r.culprits)
    return (f"{s.corpus_videos} videos: {s.indexed_ok} indexed, {s.failed} failed, "
            f"{s.unchanged} unchanged, {s.deleted} deleted"
            + (f", {s.restored} restored" if s.restored else "")
            + (f", {crashed} in crashed shards" if crashed else "")
            + (f", {len(s.quarantined)} unreadable files moved aside" if s.quarantined else "")
            + (f", {sum(v['count'] for v in s.skipped_files.values())} files skipped" if s.skipped_files else "")
            + (f" ({s.failed_total} failed rows in the dataset)" if s.failed_total != s.failed else "")
            + (f", {len(retried)} shards retried in isolation (decoder crashed or hung on: "
               f"{', '.join(culprits) or 'none'})" if retried else "")
            + f" in {s.wall_seconds:.1f} s -> {s.out}")


BUSY_LIMIT = 0.8  # a CLIP model busy for at least this share of its shards' time is what limits the run


def bottleneck(worker_seconds: dict[str, float]) -> str | None:
    """What limited shards indexed by decoder pools (GPU workers): ``"CLIP forward"`` when the model was busy for
    >= 80 % of the shards' wall time, else ``"decoding"`` (the model waited for frames); None for other runs."""
    wall = worker_seconds.get("wall", 0.0)
    if wall <= 0:
        return None
    busy = worker_seconds.get("embed", 0.0) / wall
    return f"{'CLIP forward' if busy >= BUSY_LIMIT else 'decoding'} (CLIP busy {busy:.0%} of the shards' time)"


def _listed(ids: list[str], limit: int) -> md.Md:
    return md.bullets([*map(md.code, ids[:limit]), *([f"… {len(ids) - limit} more"] if len(ids) > limit else [])])


def to_markdown(s: IndexSummary, max_failures: int = 50) -> str:
    """The summary ``s`` (from :func:`summarize`) as Markdown: counts, where the output went, what changed and
    what failed (at most ``max_failures`` entries per list)."""
    blocks = [
        md.heading(1, "Index run"),
        md.warning(RANDOM_CLIP_WARNING) if s.clip_random_init else None,
        md.table(["videos in corpus", "new", "re-indexed", "unchanged", "deleted", "ok", "failed", "crashed shards"],
                 [[s.corpus_videos, s.new, s.reindexed, s.unchanged, s.deleted, s.indexed_ok, s.failed,
                   len(s.crashed_shards)]]),
        md.join(["Output: ", md.code(s.out), " · settings hash ", md.code(s.settings_hash), " · CLIP ",
                 md.code(s.clip_weights_id), f" · {s.bytes_written / 1e6:.2f} MB written · wall "
                 f"{s.wall_seconds:.1f} s · worker seconds "
                 + ", ".join(f"{k} {v:.1f}" for k, v in s.worker_seconds.items())]),
        md.join(["Limited by: ", bottleneck(s.worker_seconds)]) if bottleneck(s.worker_seconds) else None,
    ]
    blocks += [md.paragraph(note) for note in s.notes]
    if s.run_plan:
        blocks.append(md.paragraph(f"Run plan: {s.run_plan}."))
    if s.quarantined:
        rows = [[md.code(q.file), q.reason, md.code(q.moved_to)] for q in s.quarantined[:max_failures]]
        blocks += [md.heading(2, "Unreadable files moved aside (their videos were indexed again)"),
                   md.table(["file", "reason", "moved to"], rows)]
    if s.skipped_files:
        rows = [[reason, v["count"], md.join(map(md.code, v["examples"]), ", ")]
                for reason, v in sorted(s.skipped_files.items(), key=lambda kv: -kv[1]["count"])]
        blocks += [md.heading(2, "Files not indexed"), md.table(["why", "files", "e.g."], rows)]
    for kind, title in (("new", "New videos"), ("reindexed", "Changed videos (re-indexed)"),
                        ("deleted", "Deleted videos (marked deleted)"),
                        ("restored", "Restored videos (back unchanged, not decoded)")):
        ids = getattr(s.changes, kind)
        if ids:
            blocks += [md.heading(2, f"{title}: {len(ids)}"), _listed(ids, max_failures)]
    if s.failures:
        rows = [[md.code(f.video_id), f.reason] for f in s.failures[:max_failures]]
        if len(s.failures) > max_failures:
            rows.append(["…", f"{len(s.failures) - max_failures} more"])
        blocks += [md.heading(2, "Failed videos"), md.table(["video", "reason"], rows)]
    if s.isolated_retries:
        rows = [[md.code(r.shard), r.error or "",
                 md.join(map(md.code, r.culprits), ", ") or "none (the retry indexed every video)"]
                for r in s.isolated_retries]
        blocks += [md.heading(2, "Shards retried in isolation (a worker died or hung; each video decoded in its own "
                                 "process)"),
                   md.table(["shard", "first attempt", "decoder crashed or hung on"], rows)]
    if s.crashed_shards:
        rows = [[md.code(c.shard), len(c.video_ids), c.error] for c in s.crashed_shards]
        blocks += [md.heading(2, "Crashed shards (retried on the next run)"),
                   md.table(["shard", "videos", "error"], rows)]
    return md.document(blocks)
