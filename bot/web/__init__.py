"""The operator console: what the community asks, where the bot falls short, every citation in context.

`citebot web` runs it alone (`serve`); with `CITEBOT_WEB_PORT` set, `citebot discord` serves it too, from a thread of
the same process sharing the engine and the question log (`console_alongside`). The only package of citebot that
imports FastAPI and uvicorn. Layout: `app.py` (routes and rendering), `security.py` (login, sessions, CSRF, bind
and Host checks), `charts.py` (SVG), `templates/` and `static/` (served from the package: no CDN, no build step).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from bot.config import Settings
from bot.errors import ConsoleError
from bot.question_log import QuestionLog
from bot.web.app import ConsoleEngine, create_app
from bot.web.security import check_bind, is_loopback, web_token

__all__ = [
    "DEFAULT_PORT",
    "ConsoleEngine",
    "check_bind",
    "console_alongside",
    "create_app",
    "describe",
    "is_loopback",
    "listen",
    "serve",
    "serving",
]

log = logging.getLogger("citebot.web")

DEFAULT_PORT = 8080


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound before anything slow starts, so a taken port fails at once in one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise ConsoleError(
            f"cannot serve the console on {host}:{port}: {exc.strerror or exc}; pick another port with --port "
            "(or CITEBOT_WEB_PORT)"
        ) from None
    return sock


def address_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def _server(settings: Settings, engine: ConsoleEngine, questions: QuestionLog) -> uvicorn.Server:
    app = create_app(settings, engine, questions)
    # log_config=None: uvicorn's loggers propagate to citebot's logging setup instead of replacing it.
    return uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))


def describe(settings: Settings, sock: socket.socket) -> str:
    """The line printed at start: where the console is and who can open it."""
    if web_token(settings):
        who = "log in with CITEBOT_WEB_TOKEN"
    else:
        who = "no CITEBOT_WEB_TOKEN, so no login: open to this machine's users only"
    return f"citebot: console on {address_of(sock)} ({who})"


def serve(settings: Settings, host: str, port: int) -> int:
    """`citebot web`: check the bind, listen, load the model, then serve until Ctrl-C."""
    from bot.engine import Engine  # heavy (LangChain, Chroma, the model): only once the address is known good

    check_bind(host, settings)
    sock = listen(host, port)
    engine = Engine(settings)
    questions = QuestionLog.for_settings(settings)
    print("citebot: loading the model...", file=sys.stderr)
    engine.warm_up()
    print(describe(settings, sock), file=sys.stderr, flush=True)
    try:
        _server(settings, engine, questions).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the console stops: uvicorn has shut down gracefully and re-raised the signal
    finally:
        questions.close()
        sock.close()
    return 0


@contextmanager
def serving(settings: Settings, engine: ConsoleEngine, questions: QuestionLog, sock: socket.socket) -> Iterator[str]:
    """Serve the console on a listening socket from a background thread while the body runs; yields its address.

    Why a thread with its own event loop: uvicorn then leaves the signal handlers to the main program (it installs
    none outside the main thread), so Ctrl-C still stops the bot the way it always did.
    """
    server = _server(settings, engine, questions)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="citebot-console", daemon=True)
    thread.start()
    try:
        yield address_of(sock)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def console_alongside(settings: Settings, engine: ConsoleEngine, questions: QuestionLog) -> Iterator[None]:
    """`citebot discord` with CITEBOT_WEB_PORT: the console on that port while the bot runs (nothing when unset)."""
    if settings.web_port is None:
        yield
        return
    check_bind(settings.web_host, settings)
    sock = listen(settings.web_host, settings.web_port)
    log.warning(describe(settings, sock).removeprefix("citebot: "))
    with serving(settings, engine, questions, sock):
        yield
