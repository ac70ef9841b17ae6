"""`moclip` command line: the same jobs as the Prefect deployments, without a server to set up.

Generated from the job models (``moclip.params``, built of ``moclip.config``) by pydantic-settings: every option's
type, default, range and description is written once, there. Nested settings are flags with dotted names
(``--features.mv.segments``, ``--run.workers``, ``--train.mv-epochs``); ``SHORTCUTS`` gives the common ones a
short name as well (``--segments``, ``--workers``, ``--mv-epochs``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from typing import Any

from pydantic import AliasChoices, BaseModel, Field, ValidationError, model_validator
from pydantic_settings import CliApp, CliPositionalArg, CliSettingsSource, CliSubCommand, CliSuppress

from flows.jobs import JobFailed
from moclip.config import ClipConfig, Device, MVConfig, TrainConfig
from moclip.params import (
    DEMO_FLIP,
    DemoParams,
    EvaluateParams,
    IndexParams,
    LabelParams,
    ReviewExportParams,
    ReviewImportParams,
    ReviewSelectParams,
    SearchParams,
    TrainParams,
)

# a second, short name for common options (the dotted name always works); one table for every command
SHORTCUTS: dict[str, str] = {
    "corpus.layout": "layout", "corpus.split-dir": "split-dir", "corpus.split": "split",
    "corpus.manifest": "manifest", "corpus.allow-outside-root": "allow-outside-root",
    "features.mv.segments": "segments", "features.mv.grid": "grid", "features.mv.backend": "mv-backend",
    "features.mv.source": "mv-source",
    "features.mv.max-frames": "max-frames",
    "features.window.seconds": "window", "features.window.stride": "stride", "features.window.frames": "window-frames",
    "windows.seconds": "window", "windows.stride": "stride", "windows.frames": "window-frames",
    "timeline.min-score": "min-score", "timeline.smooth": "smooth", "timeline.min-motion": "min-motion",
    "features.clip.model": "clip-model", "features.clip.weights": "clip-weights",
    "features.clip.activation": "clip-activation", "features.clip.frames": "frames",
    "features.clip.precision": "precision",
    "run.workers": "workers", "run.dask-address": "dask-address", "run.shard-size": "shard-size",
    "run.device": "device", "run.clip-batch-size": "batch-size", "run.decode-timeout-s": "decode-timeout",
    "run.decode-hard-timeout-s": "decode-hard-timeout", "run.decode-workers": "decode-workers",
    "run.resources": "resources", "run.max-delete": "max-delete", "run.allow-mass-delete": "allow-mass-delete",
    "run.keep-deleted-days": "keep-deleted-days", "run.split-s": "split-after", "run.range-s": "range-length",
    "train.mvnet": "mvnet", "train.mv-epochs": "mv-epochs", "train.head-epochs": "head-epochs",
    "train.batch-size": "batch-size-train", "train.patience": "patience", "train.flip": "flip",
    "train.val-fraction": "val-fraction", "train.seed": "seed", "train.prompts": "prompts",
    "train.precision": "train-precision", "train.device": "device",
}


def _with_root(data: Any, path_key: str = "path") -> Any:
    """Put the positional PATH into ``corpus.root``."""
    if isinstance(data, dict) and data.get(path_key) is not None:
        corpus = data.get("corpus") or {}
        corpus = corpus.model_dump() if isinstance(corpus, BaseModel) else dict(corpus)
        data = {**data, "corpus": {**corpus, "root": data[path_key]}}
    return data


class IndexCommand(IndexParams):
    """index a video corpus into a Parquet feature dataset (incremental: a rerun indexes only what changed)"""

    path: CliPositionalArg[str] = Field(description="corpus root folder")
    print_json: bool = Field(False, validation_alias="json",
                             description="print the full run summary as JSON")

    @model_validator(mode="before")
    @classmethod
    def _root(cls, data: Any) -> Any:
        return _with_root(data)

    def cli_cmd(self) -> None:
        from flows.jobs import run_index

        # only what was given: the rest may come from the dataset's manifest (IndexParams.with_recorded)
        params = IndexParams.model_validate(self.model_dump(exclude={"path", "print_json"}, exclude_unset=True))
        try:
            summary = run_index(params)
        except JobFailed as e:
            if self.print_json and e.summary is not None:
                print(e.summary.model_dump_json(indent=2))
            raise
        if self.print_json:
            print(summary.model_dump_json(indent=2))


class TrainCommand(BaseModel):
    """train the MV net, fusion head, CLIP probe and zero-shot text on a dataset, on reviewed labels, or both"""

    dataset: CliPositionalArg[list[str]] = Field(default_factory=list, description="indexed dataset folder or URL")
    out: str = Field(description="model bundle folder")
    reviewed: list[str] = Field(default_factory=list, description=TrainParams.model_fields["reviewed"].description)
    train: TrainConfig = Field(default_factory=TrainConfig, description=TrainParams.model_fields["train"].description)

    @model_validator(mode="after")
    def _one_dataset(self) -> TrainCommand:
        if len(self.dataset) > 1:
            raise ValueError(f"one dataset at most, got {len(self.dataset)}: {', '.join(self.dataset)}")
        return self

    def cli_cmd(self) -> None:
        from flows.jobs import run_train

        run_train(TrainParams(dataset=self.dataset[0] if self.dataset else None, reviewed=self.reviewed,
                              model_out=self.out, train=self.train))
        print(f"model bundle written to {self.out}")


class EvaluateCommand(BaseModel):
    """evaluate a model bundle on the dataset's test split and write a report"""

    dataset: CliPositionalArg[str] = Field(description="indexed dataset folder or URL")
    model: str = Field(description="model bundle folder")
    out: str = Field(description="report folder (report.md, report.html, results.json, plots/)")
    device: Device = Field("auto", description=EvaluateParams.model_fields["device"].description)

    def cli_cmd(self) -> None:
        from flows.jobs import run_evaluate

        run_evaluate(EvaluateParams(dataset=self.dataset, model=self.model, report_out=self.out, device=self.device))


class _LabelFeatures(BaseModel):
    """FeatureSettings' options a label job takes (its time windows are its own --window: ``windows``)."""

    mv: MVConfig = Field(default_factory=MVConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)


class LabelCommand(LabelParams):
    """label an archive with a trained model, or with none by CLIP zero-shot over class names (--classes); indexes it
    first, incrementally"""

    path: CliPositionalArg[str] = Field(description="archive folder")
    features: _LabelFeatures = Field(default_factory=_LabelFeatures,
                                     description=LabelParams.model_fields["features"].description)

    @model_validator(mode="before")
    @classmethod
    def _root(cls, data: Any) -> Any:
        return _with_root(data)

    def cli_cmd(self) -> None:
        from flows.jobs import run_label

        run_label(LabelParams.model_validate(self.model_dump(exclude={"path"}, exclude_unset=True)))


class SearchCommand(SearchParams):
    """search an indexed dataset by text (--text) or by example (--like VIDEO[@SECONDS]): videos, or time ranges"""

    dataset: CliPositionalArg[str] = Field(description="indexed dataset folder or URL (only read)")

    def cli_cmd(self) -> None:
        from flows.jobs import run_search

        run_search(SearchParams.model_validate(self.model_dump()))


class ReviewSelectCommand(ReviewSelectParams):
    """pick what people should check next: the items the model is least sure of, diverse, every class represented"""

    labels: CliPositionalArg[str] = Field(description="a label run's output folder")

    def cli_cmd(self) -> None:
        from flows.jobs import run_review_select

        run_review_select(ReviewSelectParams.model_validate(self.model_dump()))


class ReviewExportCommand(ReviewExportParams):
    """write a batch as Label Studio tasks (BATCH/tasks.json) and labelling config (BATCH/config.xml)"""

    batch: CliPositionalArg[str] = Field(description="a review batch folder")

    def cli_cmd(self) -> None:
        from flows.jobs import run_review_export

        run_review_export(ReviewExportParams.model_validate(self.model_dump()))


class ReviewImportCommand(ReviewImportParams):
    """read the reviewers' answers (Label Studio's JSON export) into LABELS/_review/reviewed.parquet"""

    labels: CliPositionalArg[str] = Field(description="the label run's output folder")

    def cli_cmd(self) -> None:
        from flows.jobs import run_review_import

        run_review_import(ReviewImportParams.model_validate(self.model_dump()))


class ReviewCommand(BaseModel):
    """the review loop: select what to check, export it to Label Studio, import the answers"""

    select: CliSubCommand[ReviewSelectCommand] = Field(description=ReviewSelectCommand.__doc__)
    export: CliSubCommand[ReviewExportCommand] = Field(description=ReviewExportCommand.__doc__)
    import_: CliSubCommand[ReviewImportCommand] = Field(alias="import", description=ReviewImportCommand.__doc__)

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)


class _DemoTrain(TrainConfig):
    device: CliSuppress[Device] = "auto"  # the demo trains on its --device (run.device)


class DemoCommand(DemoParams):
    """generate the synthetic demo corpus and run the whole job on it"""

    train: _DemoTrain = Field(default_factory=lambda: _DemoTrain(flip=DEMO_FLIP),
                              description=DemoParams.model_fields["train"].description)

    def cli_cmd(self) -> None:
        from flows.jobs import run_demo

        run_demo(DemoParams.model_validate(self.model_dump()))  # train.device: 'auto', so the run's device


class Moclip(BaseModel):
    """moclip: cheap action recognition for large video archives (the same jobs as the Prefect deployments)."""

    verbose: bool = Field(False, validation_alias=AliasChoices("v", "verbose"),
                          description="show Prefect and Dask logs")
    index: CliSubCommand[IndexCommand] = Field(description=IndexCommand.__doc__)
    train: CliSubCommand[TrainCommand] = Field(description=TrainCommand.__doc__)
    evaluate: CliSubCommand[EvaluateCommand] = Field(description=EvaluateCommand.__doc__)
    label: CliSubCommand[LabelCommand] = Field(description=LabelCommand.__doc__)
    search: CliSubCommand[SearchCommand] = Field(description=SearchCommand.__doc__)
    review: CliSubCommand[ReviewCommand] = Field(description=ReviewCommand.__doc__)
    demo: CliSubCommand[DemoCommand] = Field(description=DemoCommand.__doc__)

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)


def _source() -> CliSettingsSource:
    return CliSettingsSource(Moclip, cli_prog_name="moclip", cli_kebab_case=True, cli_implicit_flags=True,
                             cli_shortcuts=SHORTCUTS, cli_avoid_json=True, cli_hide_none_type=True)


def _quiet(verbose: bool) -> None:
    os.environ.setdefault("MOCLIP_CONSOLE", "1")  # job progress messages on stderr (moclip.progress.console)
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")  # we print our own summary and errors
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # inherited by worker processes
        logging.getLogger("distributed").setLevel(logging.WARNING)


def _errors(e: ValidationError) -> str:
    """One line per error, named by its flag: ``  --features.mv.segments: Input should be ... (got '0')``."""
    lines = []
    for err in e.errors():
        loc = [str(x) for x in err["loc"]]
        if loc and loc[0] in Moclip.model_fields:  # the subcommand
            loc = loc[1:]
        name = "--" + ".".join(loc).replace("_", "-") if loc else "parameters"
        got = f" (got {err['input']!r})" if not isinstance(err.get("input"), (dict, list)) else ""
        lines.append(f"  {name}: {err['msg']}{got}")
    return "\n".join(lines)


INTERRUPTED = "moclip: interrupted; rerun the same command to resume"


def quiet_teardown() -> None:
    """After a stop was asked for: the Dask cluster's own complaints while it is torn down under running tasks (a
    scheduler writing to a client that already left, "CommClosedError" with a traceback, a worker "lost") are not
    the user's business; the CLI says it was interrupted and how to resume."""
    import logging

    for name in ["distributed", "tornado", *list(logging.root.manager.loggerDict)]:  # list(): one C call
        if name.split(".")[0] in ("distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


class StopSignals:
    """While a command runs: SIGINT and SIGTERM both raise KeyboardInterrupt (the flow unwinds cleanly), a second one
    exits at once, and ``stopped_by`` says which came first.

    While a flow runs, Prefect's engine has a SIGTERM handler of its own: it raises TerminationSignal, which may come
    out as another error (pydantic wraps one raised while it serializes). Python writes the number of each signal it
    takes to a pipe (its wakeup fd), whichever handler then runs: a stopped job is not a failed one."""

    def __init__(self) -> None:
        self.taken: list[int] = []  # the signals our handler took
        self.seen = os.pipe()
        self.previous: dict[int, Any] = {}
        self.previous_wakeup: int | None = None

    def interrupt(self, signum: int, _frame: Any) -> None:
        if self.taken:  # the second: the clean stop is taking too long for the user
            os.write(2, f"{INTERRUPTED}\n".encode())  # not print: it may be what this signal interrupted
            os._exit(128 + self.taken[0])
        self.taken.append(signum)
        quiet_teardown()
        raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # e.g. not when a test calls main() from a thread
            # without a handler of ours, SIGTERM kills Python outright (no finally: the server was left running)
            self.previous = {sig: signal.signal(sig, self.interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
            os.set_blocking(self.seen[0], False)
            os.set_blocking(self.seen[1], False)
            self.previous_wakeup = signal.set_wakeup_fd(self.seen[1], warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.previous_wakeup is not None:
            signal.set_wakeup_fd(self.previous_wakeup)
        os.close(self.seen[0])
        os.close(self.seen[1])

    def stopped_by(self) -> int:
        """The first SIGINT or SIGTERM this command took, else 0."""
        import signal

        if self.taken:
            return self.taken[0]
        with contextlib.suppress(OSError):
            return next((s for s in os.read(self.seen[0], 1024) if s in (signal.SIGINT, signal.SIGTERM)), 0)
        return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code: 0, 1 (the job failed), 2 (invalid parameters), 130 (Ctrl-C) or 143 (SIGTERM).

    Ctrl-C and SIGTERM both stop the job cleanly: the flow unwinds (KeyboardInterrupt), reports its end to the
    local Prefect server, stops its workers and then that server. A second one exits at once; what the job started
    dies with this process (``flows.processes.die_with_parent``)."""
    import signal

    argv = sys.argv[1:] if argv is None else argv
    verbose = "-v" in argv or "--verbose" in argv
    _quiet(verbose)
    with StopSignals() as signals:
        try:
            CliApp.run(Moclip, cli_args=argv, cli_settings_source=_source())
            return 0
        except ValidationError as e:
            print(f"moclip: invalid parameters:\n{_errors(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(INTERRUPTED, file=sys.stderr)
            return 128 + (signals.stopped_by() or signal.SIGINT)
        except Exception as e:  # noqa: BLE001 - a job-level error: one clear line, not a traceback
            signum = signals.stopped_by()
            if signum:  # e.g. shards the signal stopped midway, or the unwinding: not an error of the job
                print(INTERRUPTED, file=sys.stderr)
                return 128 + signum
            if isinstance(e, JobFailed):
                print(f"moclip: error: {e}", file=sys.stderr)
                return 1
            if verbose:
                raise
            print(f"moclip: error: {type(e).__name__}: {e}", file=sys.stderr)
            return 1

def entry() -> None:
    """The console script: ``main``, then exit without the interpreter's final garbage collection over every
    object torch, open_clip and Prefect created (3-4 s on 2 cores; objects are still freed and exit hooks run)."""
    code = main()
    gc.freeze()
    sys.exit(code)


with contextlib.suppress(ImportError):  # `python -m flows.cli`
    if __name__ == "__main__":
        entry()
