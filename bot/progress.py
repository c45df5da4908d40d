"""Progress for long runs: a rich progress bar on a terminal, plain log lines otherwise (CI logs, pipes); and
`announce`, which says on a terminal what a command is waiting for (loading a model), so no wait is silent."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("citebot.progress")

ProgressCallback = Callable[[str, int, int], None]

_STAGE_LABELS = {"scan": "Reading files", "fetch": "Fetching pages", "embed": "Embedding documents"}
# Without a terminal, print a line at most this often, so logs stay readable.
_PLAIN_INTERVAL_SECONDS = 2.0


def announce(message: str) -> None:
    """Tell a person at a terminal what we are waiting for (on stderr; nothing in pipes, logs or JSON output).

    While a progress bar is drawn, rich routes this line above the bar.
    """
    if sys.stderr.isatty():
        from rich.console import Console

        Console(stderr=True, highlight=False).print(message, style="dim", markup=False)


class Reporter:
    """What a long run reports through: call it with (stage, done, total) for progress, and `announce` what it
    waits for. On a terminal, announcements print above the progress bar rather than through it."""

    def __init__(self, update: ProgressCallback, notice: Callable[[str], None] = announce) -> None:
        self._update = update
        self.announce = notice

    def __call__(self, stage: str, done: int, total: int) -> None:
        self._update(stage, done, total)


@contextmanager
def progress_reporter(enabled: bool = True) -> Iterator[Reporter]:
    """A progress bar on a terminal; in pipes and logs, progress is only logged at debug level (`citebot -v` shows
    it); nothing with JSON output. (`citebot watch` prints progress lines of its own, `plain_progress`.)"""
    if enabled and sys.stderr.isatty():
        yield from _rich_progress()
    elif enabled:
        yield Reporter(_log_progress)
    else:
        yield Reporter(lambda stage, done, total: None)


def _log_progress(stage: str, done: int, total: int) -> None:
    log.debug("%s: %d/%d", _STAGE_LABELS.get(stage, stage), done, total)


def _rich_progress() -> Iterator[Reporter]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(_STAGE_LABELS.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        def notice(message: str) -> None:
            bar.console.print(message, style="dim", markup=False, highlight=False)

        yield Reporter(update, notice)


def plain_progress() -> ProgressCallback:
    """Progress as log lines, at most one per stage every two seconds (long-running processes, CI logs)."""
    last = {"time": 0.0}

    def update(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last["time"] >= _PLAIN_INTERVAL_SECONDS:
            last["time"] = now
            print(f"{_STAGE_LABELS.get(stage, stage)}: {done}/{total}", file=sys.stderr, flush=True)

    return update
