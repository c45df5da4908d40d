"""The first ten minutes at the terminal, through the real `citebot` process: guidance where a user is stuck
(empty index, unreachable server, a wrong option), no silent or misleading waits, and output that reads well on a
terminal (pseudo-terminal, for widths and hanging indents) and in pipes (whole lines, one answer per question).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.config import Settings
from tests.conftest import SEED_CORPUS, VENV_BIN, citebot, cli_env, free_port
from tests.fake_discord import FakeDiscord
from tests.test_repl import _ANSI, PROMPT, Terminal

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
EMPTY_INDEX = "the index is empty (embedded Chroma in "
FILL_IT = "run `citebot ingest corpus/` (or `make run`)"

# One document with a long title and a long file name, so that titles, quotes and paths must wrap or shorten.
FERRY_FILE = "harbour-ferry-notes-for-the-northern-and-southern-piers.md"
FERRY = """# The harbour ferry service and its long history of crossings between the northern and southern piers

The harbour ferry carries passengers, bicycles and small delivery carts across the bay every twenty minutes, from \
the early morning tide until well after the last evening train has arrived at the station.

The ferry crews are trained by the harbour board, which also keeps the tide tables and the lanterns on both piers.
"""
CARRIES = (
    "The harbour ferry carries passengers, bicycles and small delivery carts across the bay every twenty minutes, "
    "from the early morning tide until well after the last evening train has arrived at the station."
)

# citebot, with the engine's answers fixed per kind of question, so these tests see the rendering of each support
# tier whatever the answerer decides (its decisions are tested elsewhere). Everything else is the real CLI.
STUB_ANSWERS = f"""
import sys
from dataclasses import replace
from bot.engine import Engine, clean_question
from bot.types import Answer, Citation

CARRIES = {CARRIES!r}
TITLE = {FERRY.splitlines()[0][2:]!r}
SOURCE = "corpus/{FERRY_FILE}"
cited = (Citation(1, SOURCE, TITLE, 103, 103 + len(CARRIES), CARRIES, 0.61),)
ANSWERS = {{
    "carry": Answer("", CARRIES[:-1] + " [1].", cited, "answered", 0.83),
    "bikes": Answer("", "Passengers, bicycles and carts ride it every twenty minutes [1].", cited, "answered", 0.77),
    "start": Answer("", "The corpus doesn't say exactly; the closest passage is: “" + CARRIES[:-1] + " [1].”",
                    cited, "closest", 0.41),
    "ticket": Answer("", "The corpus doesn't say (it doesn't mention tickets).", (), "none", 0.05),
}}

def ask(self, question, history=(), k=None):
    clean_question(question)  # the engine's own checks of the question (empty, too long)
    return replace(next(a for key, a in ANSWERS.items() if key in question), question=question)

Engine.ask = ask
from bot.cli import main
sys.exit(main(sys.argv[1:]))
"""
ANSWERED = "What does the harbour ferry carry?"  # an extractive answer: the quote itself
REWORDED = "Can I take bikes on the ferry?"  # an answer in other words (an LLM's): the quote is shown too
CLOSEST = "When did the harbour ferry service start?"  # the closest passage
NOTHING = "How much does a ticket cost?"  # nothing relevant


def stubbed(*args: str) -> list[str]:
    return [sys.executable, "-c", STUB_ANSWERS, *args]


def screen_lines(raw: bytes) -> list[str]:
    """The lines a terminal shows, escapes removed (for widths and indents, which `plain` folds away)."""
    return [line.rstrip("\r") for line in _ANSI.sub("", raw.decode("utf-8", errors="replace")).split("\n")]


def run_on_terminal(
    argv: list[str], env: dict[str, str], cwd: Path, columns: int, timeout: float = 60
) -> tuple[int, list[str]]:
    terminal = Terminal(argv, {**env, "TERM": "xterm", "COLUMNS": str(columns)}, cwd, columns=columns)
    try:
        status = terminal.wait(timeout)
        while not terminal.closed:  # what is still in the terminal's buffer after the exit
            terminal._read(0.1)
        return status, screen_lines(terminal.raw)
    finally:
        terminal.close()


@pytest.fixture
def ferry(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The ferry document ingested (hashing embedder); the environment to run citebot against it from tmp_path."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / FERRY_FILE).write_text(FERRY, encoding="utf-8")
    env = cli_env(settings)
    result = citebot("ingest", "corpus", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 added" in result.stdout and "1 chunk written in" in result.stdout
    return env


@pytest.fixture
def seeded(settings: Settings, tmp_path: Path) -> dict[str, str]:
    shutil.copytree(SEED_CORPUS, tmp_path / "corpus")
    env = cli_env(settings)
    assert citebot("ingest", "corpus", env=env, cwd=tmp_path).returncode == 0
    return env


# -- guidance where the user is stuck ------------------------------------------------------------------------


def test_asking_an_empty_index_says_how_to_fill_it(settings: Settings, tmp_path: Path) -> None:
    env = cli_env(settings)
    for args, stdin in ((["ask", "why Seoul?"], None), (["ask"], "why Seoul?\n"), (["ask", "--json", "why?"], None)):
        result = citebot(*args, env=env, cwd=tmp_path, stdin=stdin)
        assert result.returncode == 1, args
        if "--json" in args:  # a reader of the JSON is told why, in the JSON
            assert json.loads(result.stdout) == {"question": "why?", "error": result.stderr[len("citebot: ") :].strip()}
        else:
            assert result.stdout == ""
        assert result.stderr.startswith(f"citebot: {EMPTY_INDEX}") and result.stderr.count("\n") == 1
        assert result.stderr.rstrip().endswith(FILL_IT)
        assert "corpus doesn't say" not in result.stderr


async def test_discord_on_an_empty_index_warns_at_start_and_replies_how_to_fill_it(
    settings: Settings, tmp_path: Path
) -> None:
    token = "fake-bot-token.Secret_123"
    async with FakeDiscord(token=token) as fake:
        env = cli_env(
            settings,
            **fake.bot_env(),
        )
        process = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "citebot"), "discord", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
        )
        try:
            await fake.wait_until(lambda: bool(fake.synced_commands(fake.guild.id)), 60, "the commands synced")
            await fake.wait_for_session(timeout=30)
            interaction = await fake.dispatch_slash_command("ask", {"question": "why Seoul?"})
            reply = await fake.wait_for_original_edit(interaction, 30)  # the answer replaces "thinking…"
            assert reply.json["content"] == (  # markdown-escaped for Discord, without the server's paths
                r"I can't answer that: the index is empty: run \`citebot ingest corpus/\` (or \`make run\`)."
            )
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
    warning = stderr.decode().splitlines()[0]
    assert warning.startswith(f"citebot: {EMPTY_INDEX}") and warning.endswith(f"{FILL_IT}; the bot starts anyway")
    assert token not in stderr.decode()


def importtime_run(*args: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`citebot ARGS` under `python -X importtime`: the result (stderr without the import lines) and the modules."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(VENV_BIN / "citebot"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    imports = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[-1].strip() for line in imports}
    rest = "".join(line + "\n" for line in result.stderr.splitlines() if not line.startswith("import time:"))
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout, rest), modules


def test_an_unreachable_chroma_server_is_one_sentence_before_any_model_loads(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    env = cli_env(settings, CITEBOT_CHROMA_HOST="127.0.0.1", CITEBOT_CHROMA_PORT=str(port))
    env.pop("CITEBOT_EMBEDDING_MODEL")  # the real model: it must not even be looked at
    shutil.copytree(SEED_CORPUS, tmp_path / "corpus")
    expected = (
        f"citebot: cannot reach the Chroma server at 127.0.0.1:{port}: start it (`chroma run --path DB --port {port}`)"
        " or point CITEBOT_CHROMA_HOST/CITEBOT_CHROMA_PORT at a running one\n"
    )
    for args in (["ask", "why Seoul?"], ["sources"], ["ingest", "corpus"], ["repl"], ["eval", "x.jsonl"]):
        if args[0] == "eval":
            (tmp_path / "x.jsonl").write_text('{"q": "why Seoul?"}\n')
        result, modules = importtime_run(*args, env=env, cwd=tmp_path)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr == expected, args
        assert not {"onnxruntime", "torch", "sentence_transformers"} & modules, args
    assert not (settings.data_dir / "models").exists(), "nothing was exported either"


def test_unknown_options_show_the_usage_of_their_own_command(settings: Settings, tmp_path: Path) -> None:
    env = cli_env(settings)
    for args, usage in (
        (["ask", "--foo", "why?"], "usage: citebot ask "),
        (["ingest", "--nope"], "usage: citebot ingest "),
        (["feedback", "export", "--all"], "usage: citebot feedback export "),
    ):
        result = citebot(*args, env=env, cwd=tmp_path)
        assert result.returncode == 2, args
        assert result.stderr.startswith(usage), result.stderr
        assert f"error: unrecognized arguments: {args[-2] if args[0] == 'ask' else args[-1]}" in result.stderr


# -- no silent waits ----------------------------------------------------------------------------------------

# Opening the index and loading the model each take a second here; no answer's timings may include them.
SLOW_START = """
import sys, time
from bot.embeddings import HashingEmbedder
from bot.store import ChunkStore

open_index, embed_query = ChunkStore._open, HashingEmbedder.embed_query
slow = {"open": True, "embed": True}

def slow_open(self):
    if slow.pop("open", False):
        time.sleep(1.0)
    return open_index(self)

def slow_embed(self, text):
    if slow.pop("embed", False):
        time.sleep(1.0)
    return embed_query(self, text)

ChunkStore._open, HashingEmbedder.embed_query = slow_open, slow_embed
from bot.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_timings_never_include_start_up(seeded: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SLOW_START, "ask", "--json", "why Seoul?"],
        env=seeded,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    timings = json.loads(result.stdout)["timings_ms"]
    assert timings["total"] < 800, timings  # the two one-second waits happened before the clock started


def test_dry_run_plans_with_the_tokenizer_alone(settings: Settings, tmp_path: Path) -> None:
    shutil.copytree(SEED_CORPUS, tmp_path / "corpus")
    env = cli_env(settings)
    env.pop("CITEBOT_EMBEDDING_MODEL")  # the real model's tokenizer counts the tokens
    result, modules = importtime_run("ingest", "corpus", "--dry-run", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not {"torch", "sentence_transformers", "transformers", "onnxruntime"} & modules
    assert "tokenizers" in modules
    assert re.search(r"^Dry run: would write \d+ chunks; planning took \d+\.\d s\.$", result.stdout, re.MULTILINE)
    assert "would add: corpus/china-sends-he-lifeng-to-seoul.txt" in result.stdout
    assert not (settings.data_dir / "models").exists()


FAKE_PYTHON = """#!/bin/sh
# Stands in for python3 and the venv's python: records what make runs, installs nothing.
if [ "$1 $2" = "-m venv" ]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0
fi
echo "ran: python $*"
"""


def test_make_setup_says_what_it_installs_before_pip_runs(tmp_path: Path) -> None:
    for name in ("Makefile", "pyproject.toml", "scripts/setup"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    python = tmp_path / "fake-python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)

    def setup() -> list[str]:
        result = subprocess.run(
            ["make", "--no-print-directory", "setup", f"PYTHON={python}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    first = setup()
    log = tmp_path / ".venv" / "install.log"
    assert first[0] == (
        "Installing citebot into .venv (first time only, about two minutes; the full log goes to .venv/install.log)"
    )
    assert [line.split("…")[0] for line in first[1:4]] == [
        "  1/3 creating the environment",
        "  2/3 updating pip (a few seconds)",
        "  3/3 installing citebot and its dependencies (about two minutes: torch, sentence-transformers, chromadb)",
    ]
    assert "ran: python -m pip install -e .[dev]" in log.read_text()  # pip's own output goes to the log only
    assert not any("ran:" in line for line in first)
    assert first[-1] == "Installed; the log is in .venv/install.log."
    assert setup() == [], "nothing changed: nothing to say"
    time.sleep(0.01)
    os.utime(tmp_path / "pyproject.toml")  # newer than the stamp: the project's dependencies changed
    assert setup()[0] == "Updating citebot in .venv (pyproject.toml changed; under a minute)…"


# -- output that reads well ---------------------------------------------------------------------------------


def test_answers_fit_the_terminal_with_hanging_indents(ferry: dict[str, str], tmp_path: Path) -> None:
    columns = 60

    def ask(question: str) -> list[str]:
        status, lines = run_on_terminal(stubbed("ask", question), ferry, tmp_path, columns)
        shown = [line for line in lines if line.strip()]
        assert status == 0 and all(len(line) <= columns for line in shown), shown
        return shown

    answered = ask(ANSWERED)
    assert answered[0] == "The harbour ferry carries passengers, bicycles and small"  # wrapped at 60
    assert answered[answered.index("confidence 0.83") + 1].startswith("[1] The harbour ferry service and its long")
    entry = answered[answered.index("confidence 0.83") + 1 :]
    assert all(line.startswith("    ") for line in entry[1:]), entry  # everything of a source stays under its number
    assert not any("“" in line for line in answered), "an extractive answer is its quotes: they are not printed twice"
    assert entry[-1].strip().startswith("corpus/harbour-ferry-notes-") and "…" in entry[-1]  # a path, shortened

    reworded = ask(REWORDED)
    entry = reworded[reworded.index("confidence 0.77") + 1 :]
    quote = [line for line in entry if "“" in line or "”" in line]
    assert len(quote) == 1 or (len(quote) == 2 and quote[0].startswith("    “The harbour ferry carries"))
    assert all(line.startswith("    ") for line in entry[1:]), entry

    closest = ask(CLOSEST)
    assert closest[0] == "The corpus doesn't say exactly; the closest passage is: “The"
    assert "closest passage, not a direct answer · confidence 0.41" in closest
    assert sum("harbour ferry carries" in line for line in closest) == 1, "the quote, once"

    assert ask(NOTHING) == ["The corpus doesn't say (it doesn't mention tickets)."]  # nothing to be confident of


def test_piped_answers_are_not_wrapped(ferry: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        stubbed("ask", REWORDED), env={**ferry, "COLUMNS": "60"}, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.stdout.splitlines() == [
        "Passengers, bicycles and carts ride it every twenty minutes [1].",
        "confidence 0.77",
        "[1] The harbour ferry service and its long history of crossings between the northern and southern piers",
        f"    “{CARRIES}”",
        f"    corpus/{FERRY_FILE}:103-{103 + len(CARRIES)}",
    ]


def test_batch_answers_each_start_with_their_question(ferry: dict[str, str], tmp_path: Path) -> None:
    questions = [ANSWERED, "", CLOSEST, "x" * 1200, NOTHING]
    result = subprocess.run(
        stubbed("ask"), input="\n".join(questions) + "\n", env=ferry, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1  # one question failed
    assert result.stderr == "citebot: line 4: the question is 1,200 characters long; ask it in at most 1,000\n"
    blocks = result.stdout.rstrip("\n").split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == [f"Q: {ANSWERED}", f"Q: {CLOSEST}", f"Q: {NOTHING}"]
    assert blocks[0].splitlines()[1] == CARRIES[:-1] + " [1]."
    assert "closest passage, not a direct answer · confidence 0.41" in blocks[1].splitlines()
    assert blocks[2].splitlines()[1:] == ["The corpus doesn't say (it doesn't mention tickets)."]


def test_sources_never_split_a_path(ferry: dict[str, str], tmp_path: Path) -> None:
    status, lines = run_on_terminal([str(VENV_BIN / "citebot"), "sources"], ferry, tmp_path, columns=40)
    assert status == 0
    paths = [line.strip() for line in lines if "piers" in line and "corpus" in line]
    assert len(paths) == 1 and len(paths[0]) <= 36
    assert paths[0].startswith("corpus/harbo") and paths[0].endswith("piers.md") and "…" in paths[0]
    assert not any(line.strip().startswith(("rn-", "thern", "southern-piers")) for line in lines)

    piped = citebot("sources", env={**ferry, "COLUMNS": "40"}, cwd=tmp_path).stdout.splitlines()
    assert piped[0] == "1 indexed document:"
    assert f"    corpus/{FERRY_FILE}" in piped and any(line.startswith("    1 chunk, ingested ") for line in piped)


def test_counts_read_as_english(ferry: dict[str, str], tmp_path: Path) -> None:
    dry = citebot("ingest", "corpus", "--dry-run", env=ferry, cwd=tmp_path)
    assert "Nothing new to embed" not in dry.stdout and "Dry run: would write 0 chunks;" in dry.stdout
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "note.md").write_text("# Lanterns\n\nThe lanterns are lit at dusk.\n")
    one = citebot("ingest", "one", "--dry-run", env=ferry, cwd=tmp_path).stdout
    assert "Dry run: would write 1 chunk; planning took" in one
    repl = citebot("repl", env=ferry, cwd=tmp_path, stdin="")
    assert "1 document indexed." in repl.stderr


def test_a_title_from_a_file_name_is_cased_as_the_document_writes_it(seeded: dict[str, str], tmp_path: Path) -> None:
    titles = citebot("sources", env=seeded, cwd=tmp_path).stdout.splitlines()
    assert "  Bessent meets He Lifeng in Davos" in titles  # from bessent-meets-he-lifeng-in-davos.txt


def test_the_readme_stays_inside_the_repository_and_states_the_contract() -> None:
    from bot.types import Answer, Citation

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in readme and "DESIGN.md" not in readme
    for target in re.findall(r"\]\(([^)#]+)[^)]*\)", readme):
        if not target.startswith(("http://", "https://", "mailto:")):
            assert (ROOT / target).exists(), f"the README links to {target}, which the repository lacks"
    example = json.loads(re.search(r"```json\n(\{.*?)```", readme, re.DOTALL).group(1))  # type: ignore[union-attr]
    answer = Answer("q", "a [1].", (Citation(1, "s", "t", 0, 1, "a", 0.5),), "answered", 0.5)
    assert set(example) == set(answer.to_json())
    assert set(example["citations"][0]) == set(answer.citations[0].to_json())
    for field in Settings.model_fields.values():
        names = [name for name in field.validation_alias.choices if name.isupper()]  # type: ignore[union-attr]
        assert any(f"`{name}`" in readme for name in names), f"{names} missing from the settings table"


@pytest.mark.server
def test_the_repl_says_so_when_the_server_goes_away_and_never_shows_a_stale_list(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [str(VENV_BIN / "chroma"), "run", "--path", str(tmp_path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    try:
        shutil.copytree(SEED_CORPUS, tmp_path / "corpus")
        env = cli_env(settings, CITEBOT_CHROMA_HOST="127.0.0.1", CITEBOT_CHROMA_PORT=str(port))
        deadline = time.monotonic() + 60
        while (ingest := citebot("ingest", "corpus", env=env, cwd=tmp_path)).returncode != 0:
            assert time.monotonic() < deadline, ingest.stderr  # the server is still starting
            time.sleep(0.5)
        repl = Terminal([str(VENV_BIN / "citebot"), "repl"], {**env, "TERM": "xterm"}, tmp_path)
        try:
            repl.expect("2 documents indexed", PROMPT)
            repl.line(":sources", "2 indexed documents")
            server.terminate()
            server.wait(timeout=30)
            gone = f"error: cannot reach the Chroma server at 127.0.0.1:{port}: start it"
            reply = repl.line("why Seoul?", gone)
            assert reply.count("Chroma server") == 1 and "Are you sure" not in reply
            reply = repl.line(":sources", gone)
            assert "indexed document" not in reply and "China sends He Lifeng" not in reply
            assert repl.alive() and "Traceback" not in repl.text
        finally:
            repl.close()
    finally:
        server.kill()
        server.wait()
