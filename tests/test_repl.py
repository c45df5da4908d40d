"""The REPL, driven as a user would: a real process on a pseudo-terminal (stdlib `pty`), keys in, screen out."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from tests.conftest import SEED_CORPUS, VENV_BIN, citebot, cli_env

pytestmark = pytest.mark.timeout(60)

WAIT = 30.0  # seconds: the bound on every single wait
ROWS, COLUMNS = 40, 120
PROMPT = "citebot>"
# CSI (colors, cursor moves, modes), OSC (titles), charset selection and other two-byte escapes.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][A-Za-z0-9]|[@-Z\\-_=<>78])")
_CURSOR_POSITION_REQUEST = b"\x1b[6n"


def plain(raw: bytes) -> str:
    """What a reader sees, roughly: escapes out, every run of whitespace (wraps included) one space."""
    text = _ANSI.sub("", raw.decode("utf-8", errors="replace"))
    return re.sub(r"\s+", " ", text.replace("\r", ""))


@functools.cache
def repl_command() -> list[str]:
    """`citebot repl` once cli.py wires it in; until then, the same entry point through `python -c`."""
    listing = subprocess.run(
        [str(VENV_BIN / "citebot"), "--help"], capture_output=True, text=True, timeout=WAIT, check=False
    ).stdout
    if re.search(r"^\s+repl\b", listing, re.MULTILINE):
        return [str(VENV_BIN / "citebot"), "repl"]
    code = (
        "import sys; from bot.config import load_settings; from bot.repl import main; sys.exit(main(load_settings()))"
    )
    return [sys.executable, "-c", code]


class Terminal:
    """A child process on a pty, with an expect helper that answers cursor-position requests like a terminal."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, columns: int = COLUMNS) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: size its terminal, then become the REPL
            try:
                os.chdir(cwd)
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, columns, 0, 0))
                os.execve(argv[0], argv, env)
            except BaseException as exc:
                os.write(2, f"cannot start {argv}: {exc}\n".encode())
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.raw = b""
        self.seen = 0  # position in `plain(self.raw)` up to which output has been matched
        self.status: int | None = None
        self.closed = False  # the child closed its end of the terminal (it exited)
        self._answered_cprs = 0

    @property
    def text(self) -> str:
        return plain(self.raw)

    def _read(self, timeout: float) -> None:
        if self.closed:
            time.sleep(min(timeout, 0.05))
            return
        if not select.select([self.fd], [], [], timeout)[0]:
            return
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO on Linux once the child is gone
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.raw += chunk
        requests = self.raw.count(_CURSOR_POSITION_REQUEST)
        for _ in range(requests - self._answered_cprs):
            os.write(self.fd, f"\x1b[{ROWS};1R".encode())  # at the bottom row, as in a terminal that has scrolled
        self._answered_cprs = requests

    def expect(self, *needles: str, timeout: float = WAIT) -> str:
        """Wait until every needle shows up in the unmatched output; return that output and mark it matched."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text[self.seen :]
            if all(needle in text for needle in needles):
                end = max(text.index(needle) + len(needle) for needle in needles)
                self.seen += end
                return text[:end]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                why = "the REPL exited" if self.closed else f"nothing within {timeout} s"
                raise AssertionError(f"did not see {needles!r} ({why}); the output after the last match:\n{text}")
            self._read(min(remaining, 0.5))

    def send(self, data: str | bytes) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def line(self, text: str, *needles: str) -> str:
        """Type a line and press Enter; wait for the needles, then the next prompt; return the output up to it."""
        self.send(text + "\r")
        reply = self.expect(*needles) if needles else ""
        return reply + self.expect(PROMPT)

    def alive(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is None

    def wait(self, timeout: float = WAIT) -> int:
        """The exit status, draining the output meanwhile so the child never blocks on a full terminal."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"the REPL did not exit within {timeout} s; output:\n{self.text[self.seen :]}")
            self._read(0.1)
        assert self.status is not None
        return self.status

    def close(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def start_repl(tmp_path: Path, settings: Settings) -> Iterator[Callable[..., Terminal]]:
    terminals: list[Terminal] = []

    def start(argv: list[str] | None = None) -> Terminal:
        env = cli_env(settings, TERM="xterm", COLUMNS=str(COLUMNS), LINES=str(ROWS))
        terminal = Terminal(argv or repl_command(), env, tmp_path)
        terminals.append(terminal)
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


@pytest.fixture(scope="module")
def seed_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed corpus ingested once with the hashing embedder (by `citebot ingest`); tests get a copy. The hashing
    embedder matches words, not meaning, so the questions that must be answered use the articles' own words."""
    root = tmp_path_factory.mktemp("repl-seed")
    shutil.copytree(SEED_CORPUS, root / "corpus")
    settings = Settings(data_dir=root / "data", embedding_model="hashing", _env_file=None)  # type: ignore[call-arg]
    result = citebot("ingest", str(root / "corpus"), env=cli_env(settings), cwd=root)
    assert result.returncode == 0, result.stderr
    return settings.data_dir


@pytest.fixture
def ingested(seed_index: Path, settings: Settings) -> Settings:
    shutil.copytree(seed_index, settings.data_dir)
    return settings


def test_repl_session_in_a_terminal(ingested: Settings, start_repl: Callable[..., Terminal]) -> None:
    repl = start_repl()
    repl.expect("2 documents indexed", ":help", PROMPT)

    repl.line(
        "What did Bessent praise in Davos?", "soybeans and rare earths", "[1]", "Bessent meets He Lifeng in Davos"
    )
    repl.line(":sources", "2 indexed documents", "China sends He Lifeng to Seoul", "Bessent meets He Lifeng in Davos")
    repl.line(":k 3", "At most 3 quotes per answer.")
    repl.line(":k 0", "error: :k needs a whole number from 1 to 10")
    repl.line(":k", "At most 3 quotes per answer")
    repl.line(":nope", "error: unknown command :nope; type :help")
    repl.line(":help", ":sources", ":k N", ":json", ":clear", ":quit")

    repl.line(":json", "JSON output on")
    raw = len(repl.raw)
    reply = repl.line("why Seoul?", '"citations"')
    assert '{\r\n  "question": "why Seoul?",' in _ANSI.sub("", repl.raw[raw:].decode()), "pretty-printed"
    start = reply.index('{ "question"')
    payload, _ = json.JSONDecoder().raw_decode(reply[start:])
    assert payload["question"] == "why Seoul?"
    assert payload["citations"] and payload["citations"][0]["n"] == 1
    repl.line(":json", "JSON output off")

    # Follow-ups lean on the conversation. "when?" alone finds nothing (see the end of this block), so an answer to
    # it proves the REPL passed the earlier turn along. (The engine answers "and who leads the U.S. side?" with the
    # same passage with or without history, so that one shows only that a follow-up gets an answer.)
    repl.line("Who will lead China's delegation in Seoul on May 12-13?", "He Lifeng", "[1]")
    repl.line("when?", "May 12-13", "[1]")
    repl.line("and who leads the U.S. side?", "Bessent", "[1]")
    repl.line(":clear", "Conversation cleared")
    repl.send("when?\r")  # now without the earlier turn: no date (the extractive engine abstains)
    reply = repl.line(":k", "At most 3 quotes per answer")  # everything since the last prompt: both replies
    assert "when?" in reply and "May 12-13" not in reply
    repl.line("   ")  # a blank line is ignored: just a new prompt

    # Ctrl-C drops the half-typed line: a fresh prompt, the process lives, and the next line stands alone.
    repl.send("half a quest")
    repl.expect("half a quest")
    repl.send(b"\x03")
    repl.expect(PROMPT)
    assert repl.alive()
    repl.line(":k", "At most 3 quotes per answer")

    repl.send(b"\x04")  # Ctrl-D on an empty line
    assert repl.wait() == 0
    assert "Traceback" not in repl.text

    history = (ingested.data_dir / "repl_history").read_text()
    assert "why Seoul?" in history
    assert "half a quest" not in history


def test_repl_quit_and_empty_index(start_repl: Callable[..., Terminal], settings: Settings) -> None:
    repl = start_repl()
    repl.expect("The index is empty (embedded Chroma in", "run `citebot ingest corpus/` (or `make run`)", PROMPT)
    reply = repl.line("why Seoul?", "error: the index is empty: ")
    assert "run `citebot ingest corpus/` (or `make run`)" in reply and "corpus doesn't say" not in reply
    repl.send(":quit\r")
    assert repl.wait() == 0
    assert "Traceback" not in repl.text
    assert (settings.data_dir / "repl_history").exists()


def test_repl_reads_piped_lines(ingested: Settings, tmp_path: Path) -> None:
    """Not a terminal: plain lines in, answers out on stdout, the banner and errors on stderr."""
    too_long = "why " * 300
    questions = (
        f"What did Bessent praise in Davos?\n:k 99\n{too_long}\n:json\n"
        "Who will lead China's delegation in Seoul on May 12-13?\n\n"
    )
    result = subprocess.run(
        repl_command(),
        input=questions,
        env=cli_env(ingested, COLUMNS=str(COLUMNS)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "soybeans and rare earths" in result.stdout
    assert "2 documents indexed" in result.stderr
    assert "error: :k needs a whole number from 1 to 10, got '99'" in result.stderr
    assert "error: the question is 1,199 characters long" in result.stderr
    last, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.rindex('{\n  "question"') :])
    assert last["citations"] and "He Lifeng" in last["answer"]
    assert "Traceback" not in result.stderr


def test_a_command_typed_without_its_colon_is_the_command(ingested: Settings, tmp_path: Path) -> None:
    """ "help" and "exit" alone are what a newcomer types: they run the commands, not a search of the corpus."""
    result = subprocess.run(
        repl_command(),
        input="Help\nclear\nexit\nWhat did Bessent praise in Davos?\n",
        env=cli_env(ingested, COLUMNS=str(COLUMNS)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ":sources   list the indexed documents" in result.stdout and "Conversation cleared" in result.stdout
    assert "corpus doesn't say" not in result.stdout and "soybeans" not in result.stdout  # left at "exit"


# The REPL with an engine that takes its time over questions containing "slowly" and breaks on "explode".
SLOW_REPL = """
import sys, time
from bot.engine import Engine

ask = Engine.ask

def slow_ask(self, question, *args, **kwargs):
    if "slowly" in question:
        print("(thinking slowly)", flush=True)
        time.sleep(25)
    if "explode" in question:
        raise RuntimeError("boom\\nsecond line")
    return ask(self, question, *args, **kwargs)

Engine.ask = slow_ask
from bot.config import load_settings
from bot.repl import main
sys.exit(main(load_settings()))
"""


def test_ctrl_c_while_answering_cancels_the_question(ingested: Settings, start_repl: Callable[..., Terminal]) -> None:
    repl = start_repl([sys.executable, "-c", SLOW_REPL])
    repl.expect("2 documents indexed", PROMPT)
    repl.line("What did Bessent praise in Davos?", "soybeans")
    repl.send("why Seoul, slowly?\r")
    repl.expect("(thinking slowly)")
    repl.send(b"\x03")
    repl.expect("Cancelled", PROMPT, timeout=10)
    assert repl.alive()
    repl.line("What did Bessent praise in Davos?", "soybeans")
    reply = repl.line("explode, please", "error: unexpected RuntimeError: boom")
    assert "second line" not in reply
    repl.send(b"\x04")
    assert repl.wait() == 0
    assert "Traceback" not in repl.text
