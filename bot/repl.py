"""`citebot repl`: ask questions in a loop, with follow-ups, line editing and history. An adapter: it only reads
lines, calls the engine and renders.

In a terminal it reads with prompt_toolkit (history in `<data_dir>/repl_history`, suggestions from it);
when stdin or stdout is not a terminal it reads plain lines, so `citebot repl < questions.txt` works.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from bot.config import Settings
from bot.embeddings import create_query_embedder
from bot.errors import CitebotError, EmptyIndexError
from bot.progress import announce
from bot.question_log import QuestionLog
from bot.render import complain, paragraph, plural, render_answer, render_json, render_sources
from bot.types import DEFAULT_QUOTES, MAX_QUOTES, Turn

if TYPE_CHECKING:
    from bot.engine import Engine

log = logging.getLogger("citebot.repl")

PROMPT = "citebot> "
HISTORY_FILE = "repl_history"
MIN_K, MAX_K = 1, MAX_QUOTES
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130

HELP = f"""Type a question and press Enter; follow-ups use the conversation so far.
  :help      show this help
  :sources   list the indexed documents
  :k N       quote at most N sentences, {MIN_K} to {MAX_K} (`:k` alone shows the current limit)
  :json      toggle printing the answer JSON instead of the rendered answer
  :clear     forget the conversation and start fresh
  :quit      leave (or Ctrl-D); Ctrl-C cancels the current line or answer
The commands also work typed alone without the colon: help, sources, json, clear, quit (or exit)."""

# A line that is only a command's name is that command, not a question about the corpus ("exit", "help").
_BARE_COMMANDS = {"help": ":help", "sources": ":sources", "json": ":json", "clear": ":clear", "quit": ":quit"}
_BARE_COMMANDS |= {"exit": ":quit", "exit()": ":quit", "quit()": ":quit", ":exit": ":quit", ":q": ":quit"}

LineReader = Callable[[], str]  # returns one line; raises EOFError at the end, KeyboardInterrupt on Ctrl-C


class Repl:
    """The loop and its state: the conversation, k and the output mode."""

    def __init__(self, engine: Engine, out: Console, err: Console, question_log: QuestionLog) -> None:
        self.engine = engine
        self.question_log = question_log
        self.out = out
        self.err = err
        self.history: list[Turn] = []
        self.k: int = DEFAULT_QUOTES
        self.json_mode = False

    def run(self, read_line: LineReader) -> int:
        while True:
            try:
                line = read_line()
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt drops the line; a fresh prompt follows
            except EOFError:
                return EXIT_OK
            try:
                if not self.handle(line):
                    return EXIT_OK
            except KeyboardInterrupt:
                lead = "\n" if self.err.is_terminal else ""  # after the terminal's "^C"
                self.err.print(f"{lead}Cancelled; ask again, or :quit to leave.", style="yellow", soft_wrap=True)
            except CitebotError as exc:  # QuestionError (empty, too long) and the rest: one line, then go on
                self.error(str(exc))
            except Exception as exc:  # a bug or a library failure: one line here, the traceback with `citebot -v`
                log.debug("the REPL line %r failed", line, exc_info=True)
                self.error(one_line(exc))

    def handle(self, line: str) -> bool:
        """Run one line; False means leave."""
        text = line.strip()
        if not text:
            return True
        text = _BARE_COMMANDS.get(text.lower(), text)
        if text.startswith(":"):
            return self.command(text)
        self.ask(text)
        return True

    def ask(self, question: str) -> None:
        answer = self.engine.ask(question, self.history, k=self.k)
        self.question_log.record_answer(answer, "repl")
        self.history.append(answer.turn())
        if self.json_mode:
            render_json(answer.to_json(), self.out)
        else:
            render_answer(answer, self.out)

    def command(self, text: str) -> bool:
        name, _, argument = text.partition(" ")
        argument = argument.strip()
        if name == ":quit":
            return False
        if name == ":help":
            self.out.print(HELP, markup=False, highlight=False)
        elif name == ":sources":
            render_sources(self.engine.documents(), self.out)
        elif name == ":k":
            self.set_k(argument)
        elif name == ":json":
            self.json_mode = not self.json_mode
            mode = "on: answers print as `citebot ask --json` does" if self.json_mode else "off: answers print as text"
            self.info(f"JSON output {mode}.")
        elif name == ":clear":
            self.history.clear()
            self.info("Conversation cleared; the next question starts fresh.")
        else:
            self.error(f"unknown command {name}; type :help for the list")
        return True

    def set_k(self, argument: str) -> None:
        if not argument:
            self.info(f"At most {plural(self.k, 'quote')} per answer (change with :k N, {MIN_K} to {MAX_K}).")
            return
        try:
            value = int(argument)
        except ValueError:
            value = 0
        if not MIN_K <= value <= MAX_K:
            self.error(f":k needs a whole number from {MIN_K} to {MAX_K}, got {argument!r}")
            return
        self.k = value
        self.info(f"At most {plural(value, 'quote')} per answer.")

    def info(self, message: str) -> None:
        paragraph(self.out, message, indent=4, first="", style="dim")

    def error(self, message: str) -> None:
        paragraph(self.err, f"error: {message}", indent=4, first="", style="red")


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"unexpected {type(exc).__name__}: {lines[0] if lines else 'no details'} (run `citebot -v repl` to see more)"


def banner(document_count: int, location: str) -> str:
    head = "citebot REPL: answers from the indexed corpus, with cited, verbatim passages."
    if document_count == 0:
        empty = str(EmptyIndexError(location))
        return f"{head}\n{empty[:1].upper()}{empty[1:]}. Type :help for commands (Ctrl-D to quit)."
    indexed = plural(document_count, "document")
    return f"{head}\n{indexed} indexed. Type a question, or :help for commands (Ctrl-D to quit)."


def terminal_reader(history_path: Path) -> LineReader:
    """prompt_toolkit: line editing, history kept in `history_path`, suggestions from that history."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    history: History
    try:
        history_path.parent.mkdir(parents=True, exist_ok=True)
        history_path.touch(exist_ok=True)
        history = FileHistory(str(history_path))
    except OSError as exc:
        print(
            f"citebot: cannot keep the REPL history in {history_path} ({exc}); it lasts this session", file=sys.stderr
        )
        history = InMemoryHistory()
    session: PromptSession[str] = PromptSession(history=history, auto_suggest=AutoSuggestFromHistory())

    def read_line() -> str:
        return session.prompt(PROMPT)

    return read_line


def plain_reader() -> str:
    """No prompt, no editing: for piped input."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def main(settings: Settings) -> int:
    from bot.engine import Engine  # heavy (LangChain, Chroma): imported when the REPL starts

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    try:
        # The index is opened and checked before the model loads (see Engine.warm_up); `announce` says what we wait
        # for on a terminal.
        engine = Engine(settings, embedder=create_query_embedder(settings, announce=announce))
        engine.warm_up()
        documents = engine.documents()
    except KeyboardInterrupt:
        err.print("citebot: interrupted while loading", markup=False)
        return EXIT_INTERRUPTED
    except CitebotError as exc:
        complain(str(exc), err)
        return EXIT_FAILED
    except Exception as exc:
        log.debug("the REPL could not start", exc_info=True)
        complain(one_line(exc), err)
        return EXIT_FAILED
    # Piped: the banner goes to stderr, so stdout holds only answers.
    (out if interactive else err).print(banner(len(documents), engine.store.location), markup=False, soft_wrap=True)
    read_line = terminal_reader(settings.data_dir / HISTORY_FILE) if interactive else plain_reader
    return Repl(engine, out, err, QuestionLog.for_settings(settings)).run(read_line)


if __name__ == "__main__":  # pragma: no cover
    from bot.config import load_settings

    sys.exit(main(load_settings()))
