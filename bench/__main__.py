"""Run benchmarks by name: `python -m bench [NAME ...] [-- OPTIONS]`.

With no name every registered benchmark runs, in order. A name is a key of `BENCHMARKS` or the name of any
module in this package that has a `main()`. Options after `--` are handed to the benchmark (only allowed when
exactly one is selected), so `python -m bench squad -- --limit 500` equals `python -m bench.squad --limit 500`.
A benchmark that fails is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import traceback
from collections.abc import Callable
from typing import cast

# name -> module, in the order `python -m bench` runs them. Add new benchmark modules here.
BENCHMARKS: dict[str, str] = {
    "ingest": "bench.ingest_bbc",
    "answers": "bench.answers",
    "feed": "bench.feed_bbc",
    "squad": "bench.squad",
    "latency": "bench.latency",
    "startup": "bench.startup",
    "questionlog": "bench.questionlog",
    "learn": "bench.learn",
    "scale": "bench.scale",
}

_NOT_BENCHMARKS = {"__init__", "__main__", "common"}
# `python -m bench train` runs too (a module of this package with a `main()`), but it writes the answerer's model
# files, so `make bench` never runs it.


def resolve(name: str) -> str | None:
    """The module for a benchmark name: a registered alias, or a module of this package by its own name."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    if name in _NOT_BENCHMARKS or not name.isidentifier():
        return None
    module = f"bench.{name}"
    return module if importlib.util.find_spec(module) is not None else None


def available() -> dict[str, str]:
    """Registered benchmarks whose module exists (one may not have been written yet)."""
    return {name: module for name, module in BENCHMARKS.items() if importlib.util.find_spec(module) is not None}


def run_one(name: str, module_name: str, options: list[str]) -> bool:
    """Import the module and call its `main()` with `options` as its command line; True if it succeeded."""
    print(f"=== bench {name} ({module_name}) ===", flush=True)
    started = time.perf_counter()
    saved_argv = sys.argv
    sys.argv = [f"python -m {module_name}", *options]
    try:
        module = importlib.import_module(module_name)
        entry = cast(Callable[[], None], module.main)
        entry()
    except SystemExit as exc:  # argparse --help or an explicit exit inside the benchmark
        if exc.code not in (0, None):
            reason = exc.code if isinstance(exc.code, str) else f"exited with status {exc.code}"
            print(f"=== bench {name}: {reason} ===", flush=True)
            return False
    except Exception:
        traceback.print_exc()
        print(f"=== bench {name}: FAILED after {time.perf_counter() - started:.1f} s ===", flush=True)
        return False
    finally:
        sys.argv = saved_argv
    print(f"=== bench {name}: done in {time.perf_counter() - started:.1f} s ===\n", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, options = args[:cut], args[cut + 1 :]
    if args in (["-h"], ["--help"], ["--list"]):
        print(__doc__.strip() if args != ["--list"] else "")
        print("benchmarks:", ", ".join(available()) or "(none)")
        return 0
    if args:
        selected: dict[str, str] = {}
        for name in args:
            module = resolve(name)
            if module is None:
                print(f"unknown benchmark {name!r}; choose from: {', '.join(available())}", file=sys.stderr)
                return 2
            selected[name] = module
    else:
        selected = available()
    if options and len(selected) != 1:
        print("options after -- need exactly one benchmark name", file=sys.stderr)
        return 2
    failed = [name for name, module in selected.items() if not run_one(name, module, options)]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
