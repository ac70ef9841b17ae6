"""Prefect tasks of the train / evaluate flows: thin wrappers over moclip.train.pipeline and the report."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from moclip.params import EvaluateParams, TrainParams
from moclip.progress import console
from moclip.train.pipeline import evaluate, train
from moclip.train.results import EvaluationResults


@task(name="train-models", cache_policy=NO_CACHE)
def train_models(params: TrainParams) -> str:
    logger = get_run_logger()

    def log(message: str) -> None:
        logger.info(message)
        console(message)  # the CLI quiets Prefect's logs: say it on its stderr too

    extra = None
    if params.reviewed:
        from moclip.review.training import reviewed_samples

        extra = reviewed_samples(params.reviewed)
        log(f"{len(extra.fs.meta)} reviewed samples from {', '.join(params.reviewed)}")
    train(params.dataset, params.model_out, params.train, log=log, extra=extra)
    return params.model_out


@task(name="evaluate-test", cache_policy=NO_CACHE)
def evaluate_test(params: EvaluateParams) -> EvaluationResults:
    return evaluate(params.dataset, params.model, params.device)


@task(name="write-report", cache_policy=NO_CACHE)
def write_report(results: EvaluationResults, out_dir: str) -> tuple[str, str]:
    from moclip.report.render import write_report as render

    md, html = render(results, out_dir)
    return str(md), str(html)
