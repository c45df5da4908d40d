"""Helpers shared by the benchmarks: the machine's description, timers, a time breakdown and peak memory."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The public datasets (SQuAD, BBC News): `CITEBOT_BENCH_DATA`, else a `shared/data` folder beside the checkout.
SHARED_DATA = Path(os.environ.get("CITEBOT_BENCH_DATA") or PROJECT_ROOT.parent / "shared" / "data")
SEED_CORPUS = PROJECT_ROOT / "corpus"
# The seed question sets (*.jsonl); the development ones are those the answerer is tuned and trained on.
QUESTION_SETS = PROJECT_ROOT / "tests" / "data"
DEVELOPMENT_SETS = ("devset.jsonl", "natural_dev.jsonl")
# The BBC News corpus: one folder of *.txt articles per category.
BBC_NEWS = SHARED_DATA / "bbc-news"
BBC_CATEGORIES = ("business", "entertainment", "politics", "sport", "tech")


def bbc_folders(data: Path) -> list[Path]:
    """The category folders of a BBC News corpus at `data`, in category order."""
    return [data / category for category in BBC_CATEGORIES]


def bbc_files_by_category(data: Path) -> list[list[Path]]:
    """The articles of each category folder, sorted by name, in category order."""
    return [sorted(folder.glob("*.txt")) for folder in bbc_folders(data)]


# -- the machine -------------------------------------------------------------------------------------------


def _proc_field(path: str, key: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        return None
    return None


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine() or "unknown"


def total_ram_bytes() -> int | None:
    value = _proc_field("/proc/meminfo", "MemTotal")  # "24588152 kB"
    if value is None:
        return None
    number, _, unit = value.partition(" ")
    return int(number) * (1024 if unit.strip().lower() == "kb" else 1)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def describe_machine(with_torch: bool = True) -> list[str]:
    """One line per fact; torch is imported only when asked (it takes a second or two)."""
    ram = total_ram_bytes()
    lines = [
        f"cpu      {cpu_model()}",
        f"cores    {usable_cores()} usable ({os.cpu_count()} online)",
        f"ram      {format_bytes(ram) if ram is not None else 'unknown'}",
        f"python   {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}",
    ]
    if with_torch:
        try:
            import torch
        except ImportError:
            lines.append("torch    not installed")
        else:
            lines.append(f"torch    {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    return lines


def print_machine(with_torch: bool = True) -> None:
    print("machine")
    for line in describe_machine(with_torch):
        print(f"  {line}")


# -- time --------------------------------------------------------------------------------------------------


@dataclass
class Timer:
    """`with Timer() as timer: ...` then `timer.seconds` (wall) and `timer.cpu_seconds` (this process's CPU).

    CPU time counts every thread of the process, so with torch on N threads it can reach N x the wall time;
    it is the steadier figure when other work shares the machine.
    """

    started: float = 0.0
    cpu_started: float = 0.0
    stopped: float | None = None
    cpu_stopped: float | None = None

    def __enter__(self) -> Timer:
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        self.stopped = self.cpu_stopped = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped, self.cpu_stopped = time.perf_counter(), time.process_time()

    @property
    def seconds(self) -> float:
        end = self.stopped if self.stopped is not None else time.perf_counter()
        return end - self.started

    @property
    def cpu_seconds(self) -> float:
        end = self.cpu_stopped if self.cpu_stopped is not None else time.process_time()
        return end - self.cpu_started


@dataclass
class Breakdown:
    """Where the time goes: wrap methods or functions so their calls are timed, then print the totals.

    Wrapping replaces an attribute on the given object (an instance, a class or a module) for the life of the
    process; benchmarks use it on objects they own, never by editing the code they measure.
    """

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        original: Callable[..., Any] = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - started)

        setattr(owner, attribute, timed)

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds
        self.calls[label] = self.calls.get(label, 0) + 1

    @contextmanager
    def measure(self, label: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(label, time.perf_counter() - started)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def lines(self, total: float, rows: Sequence[tuple[str, str]]) -> list[str]:
        """`rows` are (label, caption); a caption starting with spaces reads as a part of the row above."""
        out = []
        for label, caption in rows:
            seconds = self.seconds.get(label, 0.0)
            share = 100.0 * seconds / total if total > 0 else 0.0
            out.append(f"{caption:<44s} {seconds:9.2f} s {share:6.1f} %  ({self.calls.get(label, 0)} calls)")
        return out


# -- memory ------------------------------------------------------------------------------------------------


def _maxrss_bytes(value: int) -> int:
    return value if sys.platform == "darwin" else value * 1024  # Linux reports kilobytes, macOS bytes


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far."""
    return _maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1024
    return f"{count:.2f} GiB"


@dataclass(frozen=True)
class ChildResult:
    returncode: int
    peak_rss: int  # bytes, of that child alone
    seconds: float
    cpu_seconds: float  # user + system time of that child


def run_child(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    quiet: bool = False,
    stdout: Path | None = None,
) -> ChildResult:
    """Run a command (its output goes to ours, or nowhere when `quiet`; its standard output to the file `stdout`
    when given) and return its exit code, wall time and its own peak RSS.

    `os.wait4` gives the resource usage of exactly this child, unlike RUSAGE_CHILDREN, which is the maximum
    over every child this process ever waited for.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.perf_counter()
    output = subprocess.DEVNULL if quiet else None
    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(stdout.open("wb")) if stdout is not None else output
        process = subprocess.Popen(list(command), env=env, cwd=cwd, stdout=handle, stderr=output)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
    returncode = os.waitstatus_to_exitcode(status)
    process.returncode = returncode  # reaped by wait4: keep Popen from waiting on it again
    wall = time.perf_counter() - started
    return ChildResult(returncode, _maxrss_bytes(usage.ru_maxrss), wall, usage.ru_utime + usage.ru_stime)


def load_average() -> str:
    """The 1-minute load average against the usable cores: other work on the machine skews wall times."""
    try:
        one_minute = os.getloadavg()[0]
    except OSError:
        return "load average unknown"
    return f"load average {one_minute:.2f} on {usable_cores()} cores"


def require_data(*paths: Path) -> None:
    """Leave with one line when a dataset a benchmark reads is not there."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        sys.exit(f"dataset not found: {', '.join(missing)}; set CITEBOT_BENCH_DATA to the folder that holds it")


def rss_bytes(pid: int) -> int:
    """A running process's resident memory."""
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


# The end of an answer on the REPL's piped output: its footer ("confidence 0.83", "closest passage, … · confidence
# 0.41"), or "The corpus doesn't say …", which has none.
ANSWER_END = re.compile(r"confidence \d|^The corpus doesn't say")


@dataclass
class Repl:
    """`citebot repl` on piped input, started by `repl()`: the seconds until its banner, and questions to it."""

    process: subprocess.Popen[str]
    ready_seconds: float

    def ask(self, question: str) -> None:
        """Ask, and read the answer through to its end."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(question + "\n")
        self.process.stdin.flush()
        while not ANSWER_END.search(line := self.process.stdout.readline()):
            if not line:
                raise RuntimeError(f"the REPL exited while answering (status {self.process.wait()})")

    def rss(self) -> int:
        return rss_bytes(self.process.pid)


@contextmanager
def repl(citebot: Path, env: dict[str, str], cwd: Path) -> Iterator[Repl]:
    """Start `citebot repl`, wait for its banner (piped, it goes to stderr), and close its input at the end."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(citebot), "repl"],
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stderr is not None
    try:
        while "indexed" not in (line := process.stderr.readline()):
            if not line:
                raise RuntimeError(f"the REPL exited before its banner (status {process.wait()})")
        yield Repl(process, time.perf_counter() - started)
    finally:
        process.stdin.close()
        process.wait(timeout=60)
