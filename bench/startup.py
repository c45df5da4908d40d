"""Start-up of the question path: a one-shot `citebot ask` next to `python -c "import torch"`, and the REPL's memory.

The seed corpus is ingested with the real model into a fresh folder (which also exports the question model to
ONNX), one untimed `ask` warms the page cache, then `citebot ask "why Seoul?"` and `python -c "import torch"` run
in turns, each timed from outside (wall and CPU time, and the child's own peak RSS). The REPL is then started on
piped input and its resident memory read when its banner is out (idle) and after a few questions.
Figures only, no assertions; the machine is shared, so compare the two commands of one run.

Goals: a one-shot `ask` takes less wall time than `import torch`; the REPL uses under 400 MB when idle.

    python -m bench startup
    python -m bench.startup [--runs 7] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import SEED_CORPUS, ChildResult, format_bytes, load_average, print_machine, repl, run_child

VENV_BIN = Path(sys.executable).parent
QUESTION = "why Seoul?"
REPL_QUESTIONS = ["why Seoul?", "Who leads China's delegation?", "What did Bessent praise in Davos?"]
REPL_IDLE_GOAL_BYTES = 400 * 1000 * 1000


def summary(label: str, results: list[ChildResult]) -> str:
    walls = [result.seconds for result in results]
    cpus = [result.cpu_seconds for result in results]
    peak = max(result.peak_rss for result in results)
    return (
        f"{label:<24s} wall median {statistics.median(walls):5.2f} s (min {min(walls):5.2f})   "
        f"cpu median {statistics.median(cpus):5.2f} s   peak RSS {format_bytes(peak)}"
    )


def repl_memory(env: dict[str, str], cwd: Path) -> tuple[int, int]:
    """The REPL's resident memory when idle after start-up, and after a few questions."""
    with repl(VENV_BIN / "citebot", env, cwd) as session:
        time.sleep(2.0)
        idle = session.rss()
        for question in REPL_QUESTIONS:
            session.ask(question)
        time.sleep(1.0)
        return idle, session.rss()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command, in turns (default 7)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the index here (default: a temp folder)")
    args = parser.parse_args(argv)

    print_machine()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="citebot-startup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "corpus").exists():
        shutil.copytree(SEED_CORPUS, workdir / "corpus")
    env = {key: value for key, value in os.environ.items() if not key.startswith("CITEBOT_")}
    env.pop("DISCORD_TOKEN", None)
    env["CITEBOT_DATA_DIR"] = str(workdir / "data")
    citebot = str(VENV_BIN / "citebot")

    devnull = subprocess.DEVNULL
    subprocess.run([citebot, "ingest", "corpus"], env=env, cwd=workdir, check=True, stdout=devnull)
    subprocess.run([citebot, "ask", QUESTION], env=env, cwd=workdir, check=True, stdout=devnull)

    asks: list[ChildResult] = []
    imports: list[ChildResult] = []
    print(f"\n{args.runs} runs of each, in turns; {load_average()} before")
    for _ in range(args.runs):
        asks.append(run_child([citebot, "ask", QUESTION], env=env, cwd=workdir, quiet=True))
        imports.append(run_child([sys.executable, "-c", "import torch"], env=env, cwd=workdir, quiet=True))
    print(summary(f'citebot ask "{QUESTION}"', asks))
    print(summary('python -c "import torch"', imports))
    ratio = statistics.median(r.seconds for r in asks) / statistics.median(r.seconds for r in imports)
    print(f"ask / import torch (wall medians): {ratio:.2f}  (goal: below 1.00); {load_average()} after")

    idle, used = repl_memory(env, workdir)
    goal = "met" if idle < REPL_IDLE_GOAL_BYTES else "NOT met"
    print(
        f"\nREPL resident memory: idle {format_bytes(idle)} ({idle / 1e6:.0f} MB; goal < 400 MB: {goal}), "
        f"after {len(REPL_QUESTIONS)} questions {format_bytes(used)}"
    )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
