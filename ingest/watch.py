"""`citebot watch`: keeps the sources of `sources.toml` ingested, in one long-running process.

Folders are re-ingested when a file in them changes (watchfiles: inotify, FSEvents, ReadDirectoryChangesW) and on
their schedule when they have one; URLs, feeds and sitemaps on their schedule. Every source is ingested once at
start. All runs go through one `IngestPipeline`, one at a time, so the index has one writer. Each cycle (the
sources due at one moment) ends with one summary line; a failing source is reported, retried with exponential
backoff (never later than its schedule), and never holds up the others. The Discord bot can run a watcher in its
own process (`citebot discord --watch`), sharing the model and the index.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import CitebotError
from ingest.indexer import Problem, in_scope
from ingest.pipeline import IngestPipeline, IngestReport
from ingest.sources import Source

log = logging.getLogger(__name__)

BACKOFF_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 3600.0
DEBOUNCE_MS = 1600  # changes within this window (an editor's save, a copied folder) make one run
SETTLE_SECONDS = 1.0  # after a folder's notifier starts, one more (cheap) look catches what changed meanwhile


@dataclass
class _State:
    source: Source
    due: float
    failures: int = 0
    watched: bool = False  # a folder whose changes are being watched


@dataclass
class Cycle:
    """What one cycle did: the counts of its runs (documents), and the sources that failed."""

    number: int
    sources: list[str] = field(default_factory=list)
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_written: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)  # pages or files that failed
    retries: list[tuple[str, str, float]] = field(default_factory=list)  # (source, reason, seconds until retry)

    def add(self, report: IngestReport) -> None:
        self.added += report.added
        self.changed += report.changed
        self.unchanged += report.unchanged
        self.removed += report.removed
        self.skipped += len(report.skipped)
        self.failed += len(report.failed)
        self.chunks_written += report.chunks_written
        self.problems.extend(report.failed)

    def summary(self) -> str:
        count = len(self.sources)
        return (
            f"watch: cycle {self.number} ({count} source{'s' if count != 1 else ''}): {self.added} added, "
            f"{self.changed} changed, {self.unchanged} unchanged, {self.removed} removed, {self.skipped} skipped, "
            f"{self.failed} failed; {self.chunks_written} chunks in {self.seconds:.1f} s"
        )

    def lines(self) -> list[str]:
        lines = [self.summary()]
        lines += [f"watch:   failed {problem.source}: {problem.reason}" for problem in self.problems]
        lines += [f"watch:   {source}: {reason}; retrying in {delay:.3g} s" for source, reason, delay in self.retries]
        return lines


class Watcher:
    """Runs until `stop()`; `say` receives each line of output (the CLI prints them, the bot logs them)."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        sources: Sequence[Source],
        *,
        say: Callable[[str], None] = log.info,
        clock: Callable[[], float] = time.monotonic,
        backoff: float = BACKOFF_SECONDS,
        debounce_ms: int = DEBOUNCE_MS,
    ) -> None:
        self._pipeline = pipeline
        self._say = say
        self._clock = clock
        self._backoff = backoff
        self._debounce_ms = debounce_ms
        self._states = [_State(source, due=-math.inf) for source in sources]
        self._wake: queue.Queue[_State | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.cycles = 0

    def stop(self) -> None:
        self._stop.set()
        self._wake.put(None)

    def run(self) -> None:
        """Ingest every source now, then keep them ingested until `stop()` is called."""
        self._say(f"watch: keeping {len(self._states)} source(s) ingested (Ctrl-C to stop)")
        try:
            while not self._stop.is_set():
                now = self._clock()
                due = [state for state in self._states if state.due <= now]
                if due:
                    self.run_cycle(due)
                    continue
                wait = min(state.due for state in self._states) - now
                try:
                    woken = self._wake.get(timeout=min(wait, 3600.0))
                except queue.Empty:
                    continue
                if woken is not None:
                    woken.due = min(woken.due, self._clock())
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=5)

    def run_cycle(self, due: list[_State]) -> Cycle:
        self.cycles += 1
        cycle = Cycle(self.cycles)
        started = time.perf_counter()
        for state in due:
            if self._stop.is_set():
                break
            cycle.sources.append(state.source.target)
            reason = self._ingest(state.source, cycle)
            now = self._clock()
            if reason is None:
                state.failures = 0
                state.due = now + state.source.every if state.source.every else math.inf
                if state.source.kind == "folder" and not state.watched:
                    # A change made before the notifier is armed would go unseen: look once more after it is.
                    self._watch_folder(state)
                    state.due = min(state.due, now + self._debounce_ms / 1000 + SETTLE_SECONDS)
            else:
                state.failures += 1
                delay = min(self._backoff * 2 ** (state.failures - 1), state.source.every or MAX_BACKOFF_SECONDS)
                delay = max(delay, self._backoff)
                state.due = now + delay
                cycle.retries.append((state.source.target, reason, delay))
        cycle.seconds = time.perf_counter() - started
        for line in cycle.lines():
            self._say(line)
        return cycle

    def _ingest(self, source: Source, cycle: Cycle) -> str | None:
        """Run one source; None when it went through, else why it must be retried."""
        if source.kind == "folder" and not Path(source.target).is_dir():
            return f"no such folder {source.target}; create it or fix the source list"
        target: str | Path = Path(source.target) if source.kind == "folder" else source.target
        try:
            report = self._pipeline.run([target], prune=source.prune)
        except CitebotError as exc:
            return str(exc)
        except Exception as exc:  # a bug must not stop the other sources; the traceback goes to the log
            log.exception("watch: ingesting %s failed", source.target)
            return f"unexpected error ({type(exc).__name__}: {exc})"
        cycle.add(report)
        own = next((problem for problem in report.failed if problem.source == source.target), None)
        if own is not None:  # the source itself failed: say it once, as the reason to retry
            cycle.problems.remove(own)
            return own.reason
        if report.failed and source.kind != "folder":
            pages = len(report.failed)
            return f"{pages} of its page{'s' if pages != 1 else ''} did not come in"
        return None

    def _watch_folder(self, state: _State) -> None:
        """A thread that wakes the loop when files under the folder change."""
        state.watched = True
        thread = threading.Thread(target=self._follow, args=(state,), name=f"watch {state.source.target}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _follow(self, state: _State) -> None:
        import watchfiles  # only a watcher with folders needs the file-system notifier

        folder = Path(state.source.target)
        try:
            for changes in watchfiles.watch(
                folder, stop_event=self._stop, debounce=self._debounce_ms, step=50, raise_interrupt=False
            ):
                if any(in_scope(path, [folder]) for _, path in changes):
                    self._wake.put(state)
        except Exception as exc:  # the folder vanished, or the notifier failed: ingest again and re-arm on success
            log.warning("watch: stopped watching %s (%s)", folder, exc)
        state.watched = False
        if not self._stop.is_set():
            self._wake.put(state)
