"""Ctrl-C while the CLI waits on the cluster prints no traceback: distributed's ``sync`` can log a NameError from
its own ``cancel`` when the interrupt lands before its coroutine started (seen in a CI run of test_interrupt)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import warnings

import pytest
from distributed.utils import LoopRunner, sync

from flows.cluster import InterruptedSync, quiet_interrupted_sync


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def interrupt_sync_before_its_coroutine_starts() -> None:
    """The race, made certain: the loop is busy when ``sync`` queues its coroutine, and SIGINT arrives then."""
    # The race needs this process's default Ctrl-C: SIGINT unblocked and Python's handler. In a full suite run it
    # was not (2026-12-06: both tests failed with "DID NOT RAISE" there, never alone or after the same earlier
    # files): say what an earlier test left, then test the filter with the default.
    handler = signal.getsignal(signal.SIGINT)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    if handler is not signal.default_int_handler or signal.SIGINT in blocked:
        warnings.warn(f"SIGINT was left with handler {handler!r}, blocked: {signal.SIGINT in blocked}", stacklevel=1)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    runner = LoopRunner(asynchronous=False)
    runner.start()
    try:
        runner.loop.add_callback(time.sleep, 0.5)  # the loop thread is busy for 0.5 s
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()

        async def nothing() -> None:
            return None

        with pytest.raises(KeyboardInterrupt):
            sync(runner.loop, nothing)
        time.sleep(0.8)  # the loop runs the coroutine's first step, then the queued cancel
    finally:
        runner.stop()
        signal.signal(signal.SIGINT, previous)
        if signal.SIGINT in blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@pytest.fixture
def tornado_records():
    logger, handler = logging.getLogger("tornado.application"), Records()
    filters = list(logger.filters)
    logger.addHandler(handler)
    yield logger, handler.records
    logger.removeHandler(handler)
    logger.filters[:] = filters


def test_the_race_logs_a_name_error_without_the_filter(tornado_records):
    logger, records = tornado_records
    logger.filters[:] = [f for f in logger.filters if not isinstance(f, InterruptedSync)]
    interrupt_sync_before_its_coroutine_starts()
    errors = [r for r in records if r.exc_info and isinstance(r.exc_info[1], NameError)]
    if not errors:
        pytest.skip("this distributed's sync no longer has the race (the filter can go)")
    assert "'future'" in str(errors[0].exc_info[1])


def test_the_filter_drops_exactly_that_record(tornado_records):
    logger, records = tornado_records
    quiet_interrupted_sync()
    quiet_interrupted_sync()  # idempotent
    assert sum(isinstance(f, InterruptedSync) for f in logger.filters) == 1
    interrupt_sync_before_its_coroutine_starts()
    assert not [r for r in records if r.exc_info and isinstance(r.exc_info[1], NameError)]
    try:
        raise NameError("cannot access free variable 'future'")  # the same words from anywhere else: kept
    except NameError:
        logger.error("Exception in callback", exc_info=True)
    assert len(records) == 1
