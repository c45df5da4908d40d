"""A corpus that keeps growing: ingestion, disk, start-up, memory and first-time latency at 10k, 100k and 400k chunks.

The BBC News articles are copied into distinct documents (each copy ends with its own line, so every copy is a new
document) and ingested with the hashing embedder at 384 dimensions (as the real model, with the model's own cost
left out), in steps: the first step builds 10k chunks, the next ones add to reach 100k and 400k. The whole run is
done twice, into an embedded Chroma and into a Chroma server (`chroma run`, started here on 127.0.0.1). At each size:

- ingestion of the step: wall time, chunks per second, peak memory of the `citebot ingest` process;
- the index on disk per chunk, everything included (Chroma's files, and the machine's mirror: keyword index,
  documents, word vectors);
- a one-shot `citebot ask`: the first after the step (it brings the machine's mirror up to date) and a second one
  (wall time, peak memory);
- the time until `citebot repl` is ready, and its memory when idle after one question;
- the time until `citebot discord` is ready (against the tests' fake Discord on 127.0.0.1), and its memory;
- first-time question latency: an engine (as the REPL and the bot hold it) asks questions it has never seen, p50
  and p95 of the whole question (retrieve and answer).
Then: what a corpus of a million articles would need, from the measured growth. Figures only, no assertions.

    python -m bench scale [-- --sizes 10000,100000,400000 --modes embedded,server --workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    BBC_NEWS,
    PROJECT_ROOT,
    SEED_CORPUS,
    bbc_files_by_category,
    format_bytes,
    load_average,
    print_machine,
    repl,
    require_data,
    rss_bytes,
    run_child,
)

VENV_BIN = Path(sys.executable).parent
CHUNKS_PER_ARTICLE = 4.26  # the BBC articles with the hashing embedder's token counts: 9,471 chunks / 2,225
SIZES = (10_000, 100_000, 400_000)
QUESTIONS = 200  # first-time questions per size
EMBEDDER = "hashing:384"
GOALS = (
    "goals at 400k chunks: every question answered; server: idle REPL/bot <= 450 MB, ready <= 10 s, one-shot ask "
    "<= 1.5 x the seed corpus's; embedded: the same plus Chroma's own vector index; latency p50 <= 50 ms, "
    "p95 <= 100 ms; disk <= 12 KB per chunk"
)


@dataclass
class Row:
    mode: str
    size: int
    figures: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def folder_bytes(*folders: Path) -> int:
    return sum(
        path.stat().st_size for folder in folders if folder.exists() for path in folder.rglob("*") if path.is_file()
    )


def articles(data: Path) -> list[tuple[str, str]]:
    """(name, text) of every BBC article."""
    found = []
    for files in bbc_files_by_category(data):
        for path in files:
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            found.append((f"{path.parent.name}-{path.stem}", text))
    return found


def write_step(folder: Path, sources: list[tuple[str, str]], first: int, count: int) -> None:
    """Documents `first` .. `first + count` of the endless run of copies, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(first, first + count):
        name, text = sources[number % len(sources)]
        copy = number // len(sources)
        (folder / f"{name}-copy{copy:03d}.txt").write_text(f"{text.rstrip()}\n\nArchive copy {copy}.\n", "utf-8")


def repl_ready(env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Seconds until the REPL's banner, and its memory after one question (idle)."""
    with repl(VENV_BIN / "citebot", env, cwd) as session:
        session.ask("what did the minister say about the budget?")
        time.sleep(2.0)
        return session.ready_seconds, session.rss()


def bot_ready(env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Seconds until `citebot discord` logs that it is ready (against the fake Discord), and its memory then."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.fake_discord import FakeDiscord

    async def run() -> tuple[float, int]:
        async with FakeDiscord(token="scale-token") as fake:
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                str(VENV_BIN / "citebot"),
                "discord",
                env={**env, **fake.bot_env(), "DISCORD_TOKEN": "scale-token"},
                cwd=cwd,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            assert process.stderr is not None
            try:
                while True:
                    line = (await asyncio.wait_for(process.stderr.readline(), timeout=600)).decode()
                    if not line:
                        raise RuntimeError("citebot discord exited before it was ready")
                    if "ready to answer" in line:
                        break
                ready = time.perf_counter() - started
                await asyncio.sleep(2.0)
                return ready, rss_bytes(process.pid)
            finally:
                process.terminate()
                await process.wait()

    return asyncio.run(run())


LATENCY_CHILD = """
import json, sys, time
from bot.config import Settings
from bot.engine import Engine
questions = json.load(sys.stdin)
engine = Engine(Settings())
engine.warm_up()
times, answered = [], 0
for question in questions:
    answer = engine.ask(question)
    times.append(answer.timings_ms["total"])
    answered += bool(answer.citations) or answer.support == "none"
print(json.dumps({"times": times, "answered": answered}))
"""


def latency(env: dict[str, str], cwd: Path, questions: list[str]) -> tuple[float, float, int]:
    result = subprocess.run(
        [sys.executable, "-c", LATENCY_CHILD],
        env=env,
        cwd=cwd,
        input=json.dumps(questions),
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    times = sorted(data["times"])
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], int(data["answered"])


def first_time_questions(sources: list[tuple[str, str]], count: int, salt: int) -> list[str]:
    """Questions never asked before in this run: a headline, asked a different way each time."""
    forms = ("what happened with {}?", "tell me about {}", "why {}?", "who was behind {}?", "what was said about {}?")
    step = max(1, len(sources) // count)
    return [
        forms[(number + salt) % len(forms)].format(sources[(number * step + salt) % len(sources)][1].split("\n")[0])
        for number in range(count)
    ]


def one_shot(env: dict[str, str], cwd: Path, question: str) -> tuple[float, int, bool]:
    out = cwd / "ask.json"
    result = run_child([str(VENV_BIN / "citebot"), "ask", "--json", question], env=env, cwd=cwd, stdout=out)
    answer = json.loads(out.read_text(encoding="utf-8") or "{}")
    return result.seconds, result.peak_rss, result.returncode == 0 and "answer" in answer


def server(path: Path, port: int) -> subprocess.Popen[bytes]:
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.chroma import start_chroma, wait_until_listening

    process = start_chroma(path, port)
    wait_until_listening(process, port)
    return process


def environment(data_dir: Path, host: str | None, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CITEBOT_")}
    env.pop("DISCORD_TOKEN", None)
    env.update(CITEBOT_DATA_DIR=str(data_dir), CITEBOT_EMBEDDING_MODEL=EMBEDDER, CITEBOT_QUESTION_LOG="false")
    env["CITEBOT_CHROMA_HOST"] = host or ""
    env["CITEBOT_CHROMA_PORT"] = str(port)
    return env


def run_mode(mode: str, sizes: list[int], workdir: Path, sources: list[tuple[str, str]]) -> list[Row]:
    base = workdir / mode
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    port = free_port()
    chroma = server(base / "server-db", port) if mode == "server" else None
    rows = []
    try:
        # The seed corpus alone: the one-shot ask every size is compared with.
        seed_env = environment(base / "seed-data", "127.0.0.1" if chroma else None, port)
        if chroma:
            seed_env["CITEBOT_COLLECTION"] = "seed"
        subprocess.run(
            [str(VENV_BIN / "citebot"), "ingest", str(SEED_CORPUS)],
            env=seed_env,
            cwd=base,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        one_shot(seed_env, base, "why Seoul?")
        seed_asks = [one_shot(seed_env, base, "why Seoul?")[0] for _ in range(3)]
        seed_ask = statistics.median(seed_asks)
        print(f"[{mode}] seed corpus: one-shot ask {seed_ask:.2f} s (median of 3)", flush=True)

        env = environment(base / "data", "127.0.0.1" if chroma else None, port)
        written = 0
        documents = 0
        for step, size in enumerate(sizes):
            wanted = round(size / CHUNKS_PER_ARTICLE) - documents
            folder = base / "corpus" / f"step{step}"
            write_step(folder, sources, documents, wanted)
            documents += wanted
            report = base / f"ingest{step}.json"
            started = time.perf_counter()
            result = run_child(
                [str(VENV_BIN / "citebot"), "ingest", "--json", str(folder)], env=env, cwd=base, stdout=report
            )
            seconds = time.perf_counter() - started
            chunks = json.loads(report.read_text(encoding="utf-8")).get("chunks_written", 0)
            written += chunks
            row = Row(mode, written)
            row.figures["ingest"] = (
                f"{seconds:.0f} s, {chunks / seconds:.0f} chunks/s, peak {format_bytes(result.peak_rss)}"
            )
            first_ask, first_rss, ok_first = one_shot(env, base, "what did the chancellor say about the budget?")
            ask, ask_rss, ok = one_shot(env, base, "who won the match at the weekend?")
            row.figures["one-shot ask (first after the step)"] = f"{first_ask:.2f} s, {format_bytes(first_rss)}"
            row.figures["one-shot ask"] = (
                f"{ask:.2f} s ({ask / seed_ask:.2f} x the seed corpus's), peak {format_bytes(ask_rss)}"
                + ("" if ok and ok_first else " FAILED")
            )
            mirror = base / "data" / "index"
            chroma_files = base / ("server-db" if chroma else "data/chroma")
            total = folder_bytes(chroma_files, mirror)
            vectors = sum(path.stat().st_size for path in chroma_files.rglob("data_level0.bin"))
            row.figures["disk"] = (
                f"{total / written / 1000:.1f} KB per chunk ({format_bytes(total)}: Chroma "
                f"{format_bytes(folder_bytes(chroma_files))}, of which its vector index {format_bytes(vectors)}; "
                f"the mirror {format_bytes(folder_bytes(mirror))})"
            )
            if chroma is not None:
                row.figures["Chroma server"] = f"{format_bytes(rss_bytes(chroma.pid))} resident"
            ready, memory = repl_ready(env, base)
            row.figures["REPL"] = f"ready in {ready:.1f} s, idle {format_bytes(memory)} ({memory / 1e6:.0f} MB)"
            ready, memory = bot_ready(env, base)
            row.figures["bot"] = f"ready in {ready:.1f} s, {format_bytes(memory)} ({memory / 1e6:.0f} MB)"
            p50, p95, answered = latency(env, base, first_time_questions(sources, QUESTIONS, salt=step * 7 + len(mode)))
            row.figures["first-time latency"] = f"p50 {p50:.1f} ms, p95 {p95:.1f} ms ({answered}/{QUESTIONS} answered)"
            rows.append(row)
            print(f"[{mode}] {written:,} chunks ({documents:,} documents); {load_average()}", flush=True)
            for name, value in row.figures.items():
                print(f"    {name:38s} {value}", flush=True)
            shutil.rmtree(folder)  # the files are ingested; the index keeps what it needs
    finally:
        if chroma is not None:
            chroma.terminate()
            chroma.wait(timeout=30)
    return rows


def project(rows: list[Row]) -> None:
    """What a million articles (about 4.3 million chunks) would need, from the growth between the last two sizes."""
    if len(rows) < 2:
        return
    small, large = rows[-2], rows[-1]
    per_chunk = [float(row.figures["disk"].split(" KB")[0]) for row in (small, large)]
    chunks = 1_000_000 * CHUNKS_PER_ARTICLE
    print(
        f"[{large.mode}] a million articles ({chunks / 1e6:.1f} M chunks): about {per_chunk[-1] * chunks / 1e6:.0f} GB "
        f"on disk at {per_chunk[-1]:.1f} KB per chunk (it was {per_chunk[0]:.1f} at {small.size:,} chunks); the "
        "processes that answer hold what a question needs, not the corpus (see the REPL and bot rows)\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(size) for size in SIZES), help="chunk counts, ascending")
    parser.add_argument("--modes", default="embedded,server", help="embedded, server or both")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the indexes here (default: a temp dir)")
    args = parser.parse_args()
    require_data(BBC_NEWS)
    sizes = [int(size) for size in args.sizes.split(",")]
    print_machine(with_torch=False)
    print(GOALS)
    sources = articles(BBC_NEWS)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="citebot-scale-"))
    try:
        for mode in args.modes.split(","):
            started = time.perf_counter()
            rows = run_mode(mode.strip(), sizes, workdir, sources)
            print(f"[{mode}] done in {(time.perf_counter() - started) / 60:.0f} min\n", flush=True)
            project(rows)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
