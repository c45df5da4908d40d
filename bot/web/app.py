"""The console's pages: FastAPI routes that parse, call the core (the engine, the question log, the coverage
clustering) and render Jinja2 templates. Plain HTML forms and links, no JavaScript; the stylesheet is served from
the package, so the console works offline.

Pages: Overview (`/`), Ask, Questions (`/questions`, one answer at `/questions/{id}`), Coverage gaps, Corpus,
Quality (server-side SVG charts), Export (JSONL for `citebot eval`), the document view (`/doc/{doc_id}?start=S&end=E`,
the passage in `<mark id="q">`), and `/login`. Everything is rendered with autoescaping: text from the corpus,
questions and answers always shows as text.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot.config import Settings
from bot.coverage import CachedEmbed, find_gaps
from bot.dates import format_moment as when
from bot.errors import CitebotError
from bot.learning import SHARES
from bot.links import passage_path
from bot.question_log import CHANNEL_KINDS, QuestionFilter, QuestionLog, export_lines, question_key
from bot.types import SUPPORT_LEVELS, Answer, DocumentRecord, Turn
from bot.web import charts
from bot.web.security import SESSION_COOKIE, SESSION_SECONDS, Guard, Session

HERE = Path(__file__).parent
PAGE_SIZE = 50
PERIODS = (7, 30, 90)
MAX_CONCURRENT_ASKS = 2
TRAINING_LOG = "training.log"  # under CITEBOT_DATA_DIR: the output of the last training run started here
_MARKER = re.compile(r"\[(\d+)\]")
_DOC_ID = re.compile(r"^[0-9A-Za-z_-]{1,128}$")
_ANSWER_ID = re.compile(r"^[0-9a-f]{32}$")
_VOTE_CHOICES = {"up": "👍 up", "down": "👎 down", "voted": "any vote", "unvoted": "no vote"}
_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


class ConsoleEngine(Protocol):
    """What the console uses of `bot.engine.Engine`: asking, the documents and their texts, the embedding model."""

    @property
    def embedder(self) -> Any: ...

    def ask(self, question: str, history: tuple[Turn, ...] = (), k: int | None = None) -> Answer: ...

    def documents(self) -> list[DocumentRecord]: ...

    def document_text(self, doc_id: str) -> tuple[str, bool] | None: ...

    def ingesting(self) -> list[DocumentRecord]: ...

    def document(self, doc_id: str) -> DocumentRecord | None: ...

    def indexed(self, doc_ids: Sequence[str]) -> set[str]: ...

    def passage_sentences(self, question: str, limit: int = 15) -> list[Any]: ...

    def document_sentences(self, doc_id: str) -> list[tuple[int, int, str]]: ...

    def model_info(self) -> dict[str, Any]: ...


@dataclass
class Console:
    """Everything the pages share: the core objects, the guard and the templates."""

    settings: Settings
    engine: ConsoleEngine
    questions: QuestionLog
    guard: Guard
    templates: Environment
    asking: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(MAX_CONCURRENT_ASKS))
    embed: CachedEmbed = field(init=False)
    trainings: list[subprocess.Popen[bytes]] = field(default_factory=list)  # `citebot train` runs it started

    def __post_init__(self) -> None:
        self.embed = CachedEmbed(self.engine.embedder.embed_documents)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        session: Session | None = request.state.session
        page = self.templates.get_template(template).render(
            request=request,
            csrf=self.guard.csrf_token(session) if session else "",
            login_required=self.guard.login_required,
            logged_in=session is not None,
            question_log=self.questions.enabled,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(page, status_code=status_code)


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["day"] = lambda value: when(value)[:10]
    env.filters["percent"] = lambda value: "–" if value is None else f"{value * 100:.0f}%"
    env.filters["ms"] = lambda value: "–" if value is None else f"{value:,.0f} ms"
    env.filters["answer_html"] = answer_html
    env.globals["passage"] = passage_path
    env.filters["safe_url"] = safe_url
    env.filters["jsonline"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


def answer_html(text: str, numbers: list[int] | None = None) -> Markup:
    """The answer text, escaped, with each `[n]` that names a citation turned into a link to it."""
    known = set(numbers or [])
    parts: list[str] = []
    cursor = 0
    for match in _MARKER.finditer(text):
        number = int(match.group(1))
        if number not in known:
            continue
        parts.append(str(escape(text[cursor : match.start()])))
        parts.append(f'<a class="marker" href="#c{number}">[{number}]</a>')
        cursor = match.end()
    parts.append(str(escape(text[cursor:])))
    return Markup("".join(parts))


def safe_url(url: str | None) -> str | None:
    """Only http(s) URLs become links: a `javascript:` or `data:` URL in a document record stays text."""
    if url and urlsplit(url).scheme.lower() in ("http", "https"):
        return url
    return None


def local_path(target: str | None) -> str:
    """Where to go after login: a path on this console only (no open redirect to `//elsewhere`)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def parse_day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def create_app(settings: Settings, engine: ConsoleEngine, questions: QuestionLog) -> FastAPI:
    """The console as an ASGI app; `bot.web.serve` runs it, tests drive it directly or in a browser."""
    console = Console(settings, engine, questions, Guard.for_settings(settings), templates())
    app = FastAPI(title="citebot console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = console
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.middleware("http")(_guard_middleware(console))
    _add_pages(app, console)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """Unknown pages and methods get a page of the console, not a JSON body."""
        if error.status_code == 404:
            return _not_found(console, request, "There is no such page in the console.")
        return PlainTextResponse(str(error.detail), status_code=error.status_code)

    return app


def _guard_middleware(console: Console) -> Callable[[Request, Any], Awaitable[Response]]:
    guard = console.guard

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        host = request.headers.get("host", "")
        if not guard.host_allowed(host):
            return PlainTextResponse(
                "This console answers only to 127.0.0.1 or localhost (set CITEBOT_WEB_TOKEN to serve other names).",
                status_code=400,
            )
        if request.method not in ("GET", "HEAD") and not guard.same_origin(request.headers.get("origin"), host):
            return PlainTextResponse("Cross-site request refused.", status_code=403)
        session = guard.session(request.cookies.get(SESSION_COOKIE))
        fresh_cookie = None
        if session is None and not guard.login_required:
            session, fresh_cookie = guard.new_session()  # open console: a session only to carry the CSRF token
        request.state.session = session
        public = request.url.path == "/login" or request.url.path.startswith("/static/")
        if session is None and not public:
            if request.method in ("GET", "HEAD"):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
            return PlainTextResponse("Log in first.", status_code=401)
        response = await call_next(request)
        if fresh_cookie:
            set_session_cookie(response, fresh_cookie, guard)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    return middleware


def set_session_cookie(response: Response, value: str, guard: Guard) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=guard.secure_cookies,
        path="/",
    )


def _check_csrf(console: Console, request: Request, csrf: str) -> Response | None:
    if console.guard.check_csrf(request.state.session, csrf):
        return None
    return PlainTextResponse("The form expired or did not come from this console; reload the page.", status_code=403)


def _add_pages(app: FastAPI, console: Console) -> None:
    guard = console.guard

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> Response:
        if request.state.session is not None:
            return RedirectResponse(local_path(next), status_code=303)
        return console.render(request, "login.html", target=local_path(next), failed=False)

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request, token: str = Form(""), next: str = Form("/"), name: str = Form("")) -> Response:
        if not guard.login_required:
            return RedirectResponse(local_path(next), status_code=303)
        if not guard.check_token(token):
            await asyncio.sleep(0.5)  # slows guessing down
            return console.render(request, "login.html", status_code=401, target=local_path(next), failed=True)
        if request.state.session is not None:
            guard.end(request.state.session)  # a new session at login, never one chosen before it
        _session, cookie = guard.new_session(" ".join(name.split())[:60])
        response = RedirectResponse(local_path(next), status_code=303)
        set_session_cookie(response, cookie, guard)
        return response

    @app.post("/logout")
    async def logout(request: Request, csrf: str = Form("")) -> Response:
        refused = _check_csrf(console, request, csrf)
        if refused:
            return refused
        session: Session = request.state.session
        guard.end(session)
        response = RedirectResponse("/login" if guard.login_required else "/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        today = datetime.now(UTC).date()
        activity = await run_in_threadpool(console.questions.activity, today)
        latest = await run_in_threadpool(console.questions.questions, QuestionFilter(), 10)
        tiers = Counter(item.support for item in activity)
        figures = {
            "asked": len(activity),
            "answered": tiers["answered"],
            "declined": tiers["closest"] + tiers["none"],
            "up": sum(item.up for item in activity),
            "down": sum(item.down for item in activity),
        }
        return console.render(request, "overview.html", today=today, figures=figures, latest=latest)

    @app.get("/ask", response_class=HTMLResponse)
    async def ask_page(request: Request) -> Response:
        return console.render(request, "ask.html", question="", answer=None, error=None, answer_id=None)

    @app.post("/ask", response_class=HTMLResponse)
    async def ask(request: Request, question: str = Form(""), csrf: str = Form("")) -> Response:
        refused = _check_csrf(console, request, csrf)
        if refused:
            return refused

        def answer() -> Answer:
            with console.asking:
                return console.engine.ask(question)

        try:
            answered = await run_in_threadpool(answer)
        except CitebotError as exc:
            return console.render(
                request, "ask.html", status_code=400, question=question, answer=None, error=str(exc), answer_id=None
            )
        answer_id = console.questions.record_answer(answered, "web")
        return console.render(request, "ask.html", question=question, answer=answered, error=None, answer_id=answer_id)

    @app.get("/doc/{doc_id}", response_class=HTMLResponse)
    async def document(request: Request, doc_id: str, start: str = "", end: str = "", label_for: str = "") -> Response:
        if not _DOC_ID.match(doc_id):
            return _not_found(console, request, "There is no document with that id.")
        record = await run_in_threadpool(console.engine.document, doc_id)
        found = await run_in_threadpool(console.engine.document_text, doc_id) if record else None
        if record is None or found is None:
            return _not_found(
                console,
                request,
                "This document is not in the index any more: it changed or was removed after the answer was given.",
            )
        text, complete = found
        span = _span(start, end, len(text))
        pieces = (text[: span[0]], text[span[0] : span[1]], text[span[1] :]) if span else None
        # Opened from a question's page to label it: every sentence of the document, each with its button.
        labelling = await run_in_threadpool(console.questions.get, label_for) if _ANSWER_ID.match(label_for) else None
        sentences = await run_in_threadpool(console.engine.document_sentences, doc_id) if labelling else []
        return console.render(
            request,
            "doc.html",
            record=record,
            text=text,
            complete=complete,
            span=span,
            pieces=pieces,
            bad_span=bool(start or end) and span is None,
            url=safe_url(record.url),
            labelling=labelling,
            sentences=sentences,
        )

    @app.get("/questions", response_class=HTMLResponse)
    async def question_list(request: Request) -> Response:
        params = request.query_params
        where = QuestionFilter(
            support=params.get("tier") if params.get("tier") in SUPPORT_LEVELS else None,
            vote=params.get("vote") if params.get("vote") in _VOTE_CHOICES else None,  # type: ignore[arg-type]
            channel_kind=params.get("kind") if params.get("kind") in CHANNEL_KINDS else None,
            since=parse_day(params.get("from")),
            until=parse_day(params.get("to")),
            text=(params.get("q") or "").strip() or None,
        )
        page = max(int(params["page"]) if params.get("page", "").isdigit() else 1, 1)
        rows = await run_in_threadpool(console.questions.questions, where, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
        total = await run_in_threadpool(console.questions.count, where)
        kept = {key: value for key, value in params.items() if key != "page" and value}
        return console.render(
            request,
            "questions.html",
            rows=rows[:PAGE_SIZE],
            total=total,
            page=page,
            newer=f"/questions?{urlencode({**kept, 'page': page - 1})}" if page > 1 else None,
            older=f"/questions?{urlencode({**kept, 'page': page + 1})}" if len(rows) > PAGE_SIZE else None,
            where=where,
            params=kept,
            tiers=SUPPORT_LEVELS,
            votes=_VOTE_CHOICES,
            kinds=CHANNEL_KINDS,
        )

    @app.get("/questions/{answer_id}", response_class=HTMLResponse)
    async def question(request: Request, answer_id: str) -> Response:
        stored = await run_in_threadpool(console.questions.get, answer_id) if _ANSWER_ID.match(answer_id) else None
        if stored is None:
            return _not_found(console, request, "That question is not in the log (it may have been pruned).")
        votes = await run_in_threadpool(console.questions.votes_of, answer_id)
        numbers = [int(citation.get("n", 0)) for citation in stored.citations]
        labels = await run_in_threadpool(partial(console.questions.labels, stored.question, include_undone=True))
        sentences = await run_in_threadpool(console.engine.passage_sentences, stored.question)
        present = await run_in_threadpool(console.engine.indexed, [label.doc_id for label in labels if label.doc_id])
        marked = {(label.doc_id, label.start) for label in labels if label.standing and label.verdict == "answers"}
        return console.render(
            request,
            "question.html",
            stored=stored,
            votes=votes,
            numbers=numbers,
            labels=labels,
            stale={label.label_id for label in labels if label.doc_id and label.doc_id not in present},
            sentences=sentences,
            marked=marked,
            unanswerable=any(label.standing and label.verdict == "unanswerable" for label in labels),
            labelling=console.questions.enabled,
        )

    @app.post("/questions/{answer_id}/label")
    async def label(
        request: Request,
        answer_id: str,
        csrf: str = Form(""),
        verdict: str = Form("answers"),
        doc_id: str = Form(""),
        start: str = Form(""),
        end: str = Form(""),
    ) -> Response:
        refused = _check_csrf(console, request, csrf)
        if refused:
            return refused
        stored = await run_in_threadpool(console.questions.get, answer_id) if _ANSWER_ID.match(answer_id) else None
        if stored is None:
            return _not_found(console, request, "That question is not in the log (it may have been pruned).")
        who = guard.name_of(request.state.session)
        if verdict == "unanswerable":
            await run_in_threadpool(
                console.questions.add_label, stored.question, "unanswerable", who, answer_id=answer_id
            )
            return RedirectResponse(f"/questions/{answer_id}#labels", status_code=303)
        sentence = await run_in_threadpool(_sentence, console.engine, doc_id, start, end)
        if sentence is None:
            return console.render(
                request,
                "error.html",
                status_code=400,
                title="Not a sentence",
                message="That is not a sentence of an indexed document (it may have changed since); reload the page.",
            )
        record, begin, finish, quote = sentence
        await run_in_threadpool(
            partial(
                console.questions.add_label,
                stored.question,
                "answers",
                who,
                answer_id=answer_id,
                doc_id=record.doc_id,
                start=begin,
                end=finish,
                quote=quote,
                source=record.source,
            )
        )
        return RedirectResponse(f"/questions/{answer_id}#labels", status_code=303)

    @app.post("/labels/{label_id}/undo")
    async def undo(request: Request, label_id: str, csrf: str = Form(""), next: str = Form("/questions")) -> Response:
        refused = _check_csrf(console, request, csrf)
        if refused:
            return refused
        if _ANSWER_ID.match(label_id):
            await run_in_threadpool(console.questions.undo_label, label_id, guard.name_of(request.state.session))
        return RedirectResponse(local_path(next), status_code=303)

    @app.get("/gaps", response_class=HTMLResponse)
    async def gaps(request: Request, days: str = "") -> Response:
        period = _days(days)
        since = datetime.now(UTC).date() - timedelta(days=period - 1)
        misses = await run_in_threadpool(console.questions.shortfalls, since)
        found = await run_in_threadpool(find_gaps, misses, console.embed)
        return console.render(request, "gaps.html", gaps=found, misses=len(misses), days=period, periods=PERIODS)

    @app.get("/corpus", response_class=HTMLResponse)
    async def corpus(request: Request) -> Response:
        documents = await run_in_threadpool(console.engine.documents)
        ingesting = await run_in_threadpool(console.engine.ingesting)
        documents = sorted(documents, key=lambda record: record.published or record.ingested_at, reverse=True)
        return console.render(
            request,
            "corpus.html",
            documents=documents,
            ingesting=ingesting,
            chunks=sum(record.chunks for record in documents),
        )

    @app.get("/quality", response_class=HTMLResponse)
    async def quality(request: Request, days: str = "", busy: str = "") -> Response:
        period = _days(days)
        since = datetime.now(UTC).date() - timedelta(days=period - 1)
        activity = await run_in_threadpool(console.questions.activity, since)
        console.trainings[:] = [process for process in console.trainings if process.poll() is None]  # reap the done
        runs = await run_in_threadpool(console.questions.training_runs, 5) if console.questions.enabled else []
        labels = await run_in_threadpool(console.questions.labels) if console.questions.enabled else []
        voted = await run_in_threadpool(console.questions.voted) if console.questions.enabled else []
        model = await run_in_threadpool(console.engine.model_info)
        return console.render(
            request,
            "quality.html",
            days=period,
            periods=PERIODS,
            runs=runs,
            running=any(run["status"] == "running" for run in runs),
            shares=SHARES,
            busy=bool(busy),
            labelled=len({label.key for label in labels}),
            voted=len({question_key(answer.question) for answer in voted}),
            model=model,
            **charts.quality(activity, since, period),
        )

    @app.post("/quality/train")
    async def train(request: Request, csrf: str = Form("")) -> Response:
        """Start `citebot train` in a process of its own: answering never waits for it, and every engine (this
        console's too) switches to the new model when it is published."""
        refused = _check_csrf(console, request, csrf)
        if refused:
            return refused
        run_id = await run_in_threadpool(console.questions.start_training, guard.name_of(request.state.session))
        if run_id is None:
            return RedirectResponse("/quality?busy=1#training", status_code=303)
        log_path = console.settings.data_dir / TRAINING_LOG  # what the run printed, for an operator to read
        with log_path.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "train", "--run-id", run_id],
                env={**os.environ, **console.settings.environment()},  # this console's index, however it was set
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        console.trainings.append(process)  # reaped when the console stops
        await run_in_threadpool(partial(console.questions.update_training, run_id, message="starting", pid=process.pid))
        return RedirectResponse("/quality#training", status_code=303)

    @app.get("/export", response_class=HTMLResponse)
    async def export_page(request: Request, days: str = "") -> Response:
        period = _days(days, (*PERIODS, 0))
        lines = await run_in_threadpool(_export, console.questions, period)
        kinds = Counter(str(line["kind"]) for line in lines)
        return console.render(
            request, "export.html", days=period, periods=PERIODS, lines=lines[:5], total=len(lines), kinds=kinds
        )

    @app.get("/export.jsonl")
    async def export_file(days: str = "") -> Response:
        lines = await run_in_threadpool(_export, console.questions, _days(days, (*PERIODS, 0)))

        def body() -> Iterator[str]:
            for line in lines:
                yield json.dumps(line, ensure_ascii=False) + "\n"

        name = f"citebot-gaps-{datetime.now(UTC).date().isoformat()}.jsonl"
        return StreamingResponse(
            body(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


def _sentence(engine: ConsoleEngine, doc_id: str, start: str, end: str) -> tuple[DocumentRecord, int, int, str] | None:
    """The document and the quotable sentence at `start:end` of it, when that is one."""
    if not (_DOC_ID.match(doc_id) and start.isdigit() and end.isdigit()):
        return None
    record = engine.document(doc_id)
    if record is None:
        return None
    for begin, finish, quote in engine.document_sentences(doc_id):
        if (begin, finish) == (int(start), int(end)):
            return record, begin, finish, quote
    return None


def _export(questions: QuestionLog, days: int) -> list[dict[str, Any]]:
    """Declined and 👎 questions of the last `days` days (0: all) as `citebot eval` lines."""
    since = datetime.now(UTC).date() - timedelta(days=days - 1) if days > 0 else None
    return list(export_lines(questions, votes="down", declined=True, since=since))


def _span(start: str, end: str, length: int) -> tuple[int, int] | None:
    """The highlighted span, if the query names a valid one inside the text."""
    if not (start.isdigit() and end.isdigit()):
        return None
    first, last = int(start), int(end)
    return (first, last) if 0 <= first < last <= length else None


def _not_found(console: Console, request: Request, message: str) -> HTMLResponse:
    return console.render(request, "error.html", status_code=404, title="Not found", message=message)


def _days(text: str, allowed: tuple[int, ...] = PERIODS) -> int:
    """The period a page covers, from its `days` parameter; 30 unless it names an offered one."""
    return int(text) if text.isdigit() and int(text) in allowed else 30
