"""The operator console over HTTP (FastAPI's test client; tests/test_web_browser.py drives it in Chromium): login,
sessions and CSRF, the bind and Host checks, the document view, escaping, every page, the export, and the
`citebot web` and `citebot discord` commands serving it on a real port."""

from __future__ import annotations

import base64
import html
import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bot.config import Settings
from bot.engine import Engine
from bot.errors import ConfigError
from bot.evaluation import load_cases
from bot.links import passage_path
from bot.question_log import QuestionLog
from bot.store import ChunkStore
from bot.types import DocumentContent, DocumentRecord
from bot.web import check_bind, create_app, listen, security
from ingest.pipeline import IngestPipeline
from tests.conftest import VENV_BIN, cli_env, free_port
from tests.console_data import (
    SEOUL,
    XSS_DOCUMENT,
    XSS_QUESTION,
    add_hostile_web_record,
    add_markup_documents,
    seed_log,
)
from tests.fake_discord import FakeDiscord

TOKEN = "a-long-operator-token-0123456789"
LOCAL = "http://127.0.0.1:8080"
PAGES = ["/", "/ask", "/questions", "/gaps", "/corpus", "/quality", "/export"]


@pytest.fixture
def engine(settings: Settings, corpus: Path, tmp_path: Path) -> Engine:
    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    add_markup_documents(engine, tmp_path / "extra")
    return engine


def client(settings: Settings, engine: Engine, log: QuestionLog, token: str | None = TOKEN) -> TestClient:
    configured = settings.model_copy(update={"web_token": SecretStr(token) if token else None})
    return TestClient(create_app(configured, engine, log), base_url=LOCAL, follow_redirects=False)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page carries a CSRF token"
    return found.group(1)


def logged_in(settings: Settings, engine: Engine, log: QuestionLog) -> TestClient:
    web = client(settings, engine, log)
    assert web.post("/login", data={"token": TOKEN}).status_code == 303
    return web


def mark(page: httpx.Response) -> str:
    found = re.search(r'<mark id="q">(.*?)</mark>', page.text, re.DOTALL)
    assert found, "the passage is marked"
    return html.unescape(found.group(1))


# ----------------------------------------------------------------------------------------------- security


def test_every_page_needs_a_login_when_a_token_is_set(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    web = client(settings, engine, log)
    for path in [*PAGES, "/doc/abc", "/questions/" + "0" * 32, "/export.jsonl"]:
        response = web.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
    assert web.post("/ask", data={"question": "q", "csrf": "x"}).status_code == 401
    assert web.get("/login").status_code == 200 and web.get("/static/console.css").status_code == 200

    refused = web.post("/login", data={"token": "wrong"})
    assert refused.status_code == 401 and "That token is not right" in refused.text
    assert "citebot_session" not in refused.cookies

    accepted = web.post("/login", data={"token": TOKEN, "next": "/questions?tier=none"})
    assert accepted.status_code == 303 and accepted.headers["location"] == "/questions?tier=none"
    cookie = accepted.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    for path in PAGES:
        assert web.get(path).status_code == 200, path


def test_login_refuses_open_redirects(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    web = client(settings, engine, log)
    for target in ["//evil.example/", "https://evil.example/", "/\\evil.example"]:
        response = web.post("/login", data={"token": TOKEN, "next": target})
        assert response.headers["location"] == "/", target


def test_posts_need_the_csrf_token_and_a_same_origin(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    web = logged_in(settings, engine, log)
    assert web.post("/ask", data={"question": SEOUL}).status_code == 403
    assert web.post("/ask", data={"question": SEOUL, "csrf": "forged"}).status_code == 403
    token = csrf_of(web.get("/ask"))
    cross = web.post("/ask", data={"question": SEOUL, "csrf": token}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    ok = web.post("/ask", data={"question": SEOUL, "csrf": token}, headers={"Origin": LOCAL})
    assert ok.status_code == 200 and "neutral staging ground" in ok.text
    assert web.post("/logout", data={}).status_code == 403, "logging out needs the token too"

    public = settings.model_copy(update={"public_url": "https://citebot.example.org", "web_token": SecretStr(TOKEN)})
    # Behind a TLS proxy that passes the backend's Host on: the browser's Origin is the public address.
    proxied = TestClient(create_app(public, engine, log), base_url="https://127.0.0.1:8080", follow_redirects=False)
    login = proxied.post("/login", data={"token": TOKEN})
    assert "secure" in login.headers["set-cookie"].lower(), "https public URL: the cookie is Secure"
    form = csrf_of(proxied.get("/ask"))
    behind_proxy = {"Origin": "https://citebot.example.org"}
    assert proxied.post("/ask", data={"question": SEOUL, "csrf": form}, headers=behind_proxy).status_code == 200


def test_logout_ends_the_session_for_good(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    web = logged_in(settings, engine, log)
    stolen = str(web.cookies.get("citebot_session"))
    other = TestClient(web.app, base_url=LOCAL, follow_redirects=False)  # the same console, another browser
    other.cookies.set("citebot_session", stolen)
    assert other.get("/").status_code == 200
    assert web.post("/logout", data={"csrf": csrf_of(web.get("/"))}).headers["location"] == "/login"
    assert other.get("/").status_code == 303, "a logged-out session cookie is refused even if copied"

    forged = TestClient(web.app, base_url=LOCAL, follow_redirects=False)
    sid, issued, _signature = stolen.split(".")
    forged.cookies.set("citebot_session", f"{sid}.{issued}.{'0' * 64}")
    assert forged.get("/").status_code == 303
    restarted = client(settings, engine, log)
    restarted.cookies.set("citebot_session", str(logged_in(settings, engine, log).cookies.get("citebot_session")))
    assert restarted.get("/").status_code == 303, "a restart ends every session"


def test_sessions_expire(settings: Settings, engine: Engine, log: QuestionLog, monkeypatch: pytest.MonkeyPatch) -> None:
    web = logged_in(settings, engine, log)
    assert web.get("/").status_code == 200
    later = time.time() + 8 * 24 * 3600
    monkeypatch.setattr(security.time, "time", lambda: later)
    assert web.get("/").status_code == 303


def test_without_a_token_loopback_is_open_but_only_to_loopback_names(
    settings: Settings, engine: Engine, log: QuestionLog
) -> None:
    web = client(settings, engine, log, token=None)
    page = web.get("/questions")
    assert page.status_code == 200 and "no <code>CITEBOT_WEB_TOKEN</code> is set" in page.text
    assert "Log out" not in page.text
    form = web.get("/ask")  # the client keeps the session cookie that ties the form's CSRF token to it
    answered = web.post("/ask", data={"question": SEOUL, "csrf": csrf_of(form)})
    assert answered.status_code == 200 and "neutral staging ground" in answered.text
    assert web.post("/ask", data={"question": SEOUL}).status_code == 403, "CSRF holds without a login too"
    rebinding = web.get("/questions", headers={"Host": "evil.example:8080"})
    assert rebinding.status_code == 400, "a DNS-rebinding page cannot read the open console"
    assert web.get("/", headers={"Host": "localhost:8080"}).status_code == 200


def test_binding_beyond_loopback_needs_a_token(settings: Settings) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        check_bind(host, settings)
    for host in ("0.0.0.0", "192.168.1.10", "example.org", "::"):
        with pytest.raises(ConfigError, match="CITEBOT_WEB_TOKEN"):
            check_bind(host, settings)
    check_bind("0.0.0.0", settings.model_copy(update={"web_token": SecretStr(TOKEN)}))


def test_pages_send_a_strict_content_security_policy(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    page = logged_in(settings, engine, log).get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy, "no script may run at all"
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text and "http://" not in page.text.split("<body", 1)[1].replace(LOCAL, "")


# ------------------------------------------------------------------------------------------- document view


def test_the_document_view_marks_exactly_the_cited_passage(
    settings: Settings, engine: Engine, log: QuestionLog
) -> None:
    web = logged_in(settings, engine, log)
    citation = engine.ask(SEOUL).citations[0]
    page = web.get(passage_path(citation.doc_id, citation.start, citation.end).removesuffix("#q"))
    assert page.status_code == 200 and mark(page) == citation.quote
    found = engine.document_text(citation.doc_id)
    assert found is not None and found[1], "the stored text is complete"
    body = re.search(r'<div class="doc-text">(.*?)</div>', page.text, re.DOTALL)
    assert body and html.unescape(re.sub(r"</?mark[^>]*>", "", body.group(1))) == found[0]

    whole = web.get(f"/doc/{citation.doc_id}")
    assert whole.status_code == 200 and '<mark id="q">' not in whole.text
    outside = web.get(f"/doc/{citation.doc_id}?start=5&end=999999")
    assert "not inside this document" in outside.text and '<mark id="q">' not in outside.text
    assert "not inside this document" in web.get(f"/doc/{citation.doc_id}?start=x&end=3").text


def test_documents_are_chosen_by_id_never_by_path(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    web = logged_in(settings, engine, log)
    for bad in ["..%2F..%2Fetc%2Fpasswd", "%2E%2E", "corpus%2Fchina-sends-he-lifeng-to-seoul.txt", "0" * 32]:
        response = web.get(f"/doc/{bad}")
        assert response.status_code == 404, bad
        assert "root:" not in response.text


def rewrite_as_an_early_version(store: ChunkStore) -> None:
    """Rewrite the index as early versions wrote it: no document texts, each chunk's text as its Chroma document,
    sentence and heading vectors in half precision in each chunk's metadata, and records without `updated`."""
    handles = store._open()
    records = store.documents()
    chunks = store.chunks_of(records)
    vectors = store.stored_chunks([chunk.id for chunk, _ in chunks])
    handles.contents.delete(ids=list(records))
    handles.chunks.delete(ids=[chunk.id for chunk, _ in chunks])
    handles.documents.delete(ids=list(records))

    def half(vector: np.ndarray) -> str:
        return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")

    for chunk, sentences in chunks:
        assert sentences is not None
        handles.chunks.add(
            ids=[chunk.id],
            embeddings=[vectors[chunk.id].vector],
            documents=[chunk.text],
            metadatas=[
                {
                    "doc_id": chunk.doc_id,
                    "title": chunk.title,
                    "start": chunk.start,
                    "end": chunk.end,
                    "heading": chunk.heading,
                    "position": chunk.position,
                    "sentence_spans": json.dumps([[a, b, int(c)] for a, b, c in sentences.spans]),
                    "sentence_vectors": half(sentences.vectors),
                    "heading_vector": half(sentences.heading),
                }
            ],
        )
    for record in records.values():
        handles.documents.add(
            ids=[record.doc_id],
            embeddings=[[1.0]],
            metadatas=[
                {
                    "kind": "document",
                    "sources": json.dumps(list(record.sources)),
                    "title": record.title,
                    "chunks": record.chunks,
                    "ingested_at": record.ingested_at,
                    "ready": True,
                    "origin": record.origin,
                }
            ],
        )
    store._bump_generation()


def test_documents_from_before_texts_were_kept_are_rebuilt_from_their_passages(
    settings: Settings, corpus: Path, log: QuestionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_settings = settings.model_copy(update={"data_dir": settings.data_dir / "old-index"})
    engine = Engine(old_settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    rewrite_as_an_early_version(engine.store)
    citation = engine.ask(SEOUL).citations[0]
    rebuilt = engine.document_text(citation.doc_id)
    assert rebuilt is not None and not rebuilt[1]
    assert rebuilt[0][citation.start : citation.end] == citation.quote, "offsets still land on the quote"
    page = logged_in(old_settings, engine, log).get(f"/doc/{citation.doc_id}?start={citation.start}&end={citation.end}")
    assert mark(page) == citation.quote and "rebuilt from its passages" in page.text


def test_web_documents_link_to_their_page(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    record = DocumentRecord(
        "e" * 32,
        ("https://news.example.org/seoul?id=1&x=2",),
        "Seoul talks",
        0,
        "2025-05-02T00:00:00+00:00",
        url="https://news.example.org/seoul?id=1&x=2",
        published="2025-05-01T08:00:00+00:00",
        origin="url",
    )
    engine.store.put_documents([record], {record.doc_id: DocumentContent("Talks in Seoul.", ())})
    page = logged_in(settings, engine, log).get(f"/doc/{record.doc_id}?start=9&end=14")
    assert mark(page) == "Seoul"
    assert '<a href="https://news.example.org/seoul?id=1&amp;x=2" rel="noopener noreferrer nofollow"' in page.text
    assert "Published</dt><dd>2025-05-01" in page.text


def test_markup_in_documents_questions_and_urls_is_escaped(
    settings: Settings, engine: Engine, log: QuestionLog
) -> None:
    web = logged_in(settings, engine, log)
    hostile = add_hostile_web_record(engine)
    markup = next(record for record in engine.documents() if record.title.startswith("Notes on"))
    page = web.get(f"/doc/{markup.doc_id}")
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert 'href="javascript' not in page.text.lower()
    assert html.unescape(re.search(r'<div class="doc-text">(.*?)</div>', page.text, re.DOTALL).group(1)) == (  # type: ignore[union-attr]
        XSS_DOCUMENT
    )

    for path in ["/corpus", f"/doc/{hostile.doc_id}"]:
        shown = web.get(path)
        assert "javascript:alert(&#39;url&#39;)" in shown.text, "the URL is shown as text"
        assert 'href="javascript' not in shown.text.lower(), f"{path} must not link a javascript: URL"
        assert "Hostile &lt;em&gt;feed&lt;/em&gt; item" in shown.text

    asked = web.post("/ask", data={"question": XSS_QUESTION, "csrf": csrf_of(web.get("/ask"))})
    assert "<script>alert" not in asked.text and "&lt;script&gt;alert(&#34;question&#34;)" in asked.text
    listed = web.get("/questions?kind=web")
    assert "<script>alert" not in listed.text and "<img src=x" not in listed.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in listed.text


# ---------------------------------------------------------------------------------------------------- pages


def test_ask_logs_the_question_from_the_web(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    web = logged_in(settings, engine, log)
    page = web.post("/ask", data={"question": SEOUL, "csrf": csrf_of(web.get("/ask"))})
    assert page.status_code == 200
    answer_id = re.search(r'href="/questions/([0-9a-f]{32})"', page.text).group(1)  # type: ignore[union-attr]
    stored = log.get(answer_id)
    assert stored is not None and stored.channel_kind == "web" and stored.question == SEOUL
    assert '<a class="marker" href="#c1">[1]</a>' in page.text and 'id="c1"' in page.text
    assert 'href="/doc/' in page.text and "Read in context" in page.text

    empty = web.post("/ask", data={"question": "   ", "csrf": csrf_of(web.get("/ask"))})
    assert empty.status_code == 400 and "the question is empty" in empty.text


def test_the_questions_page_lists_newest_first_and_filters(
    settings: Settings, engine: Engine, log: QuestionLog
) -> None:
    ids = seed_log(engine, log)
    web = logged_in(settings, engine, log)
    listed = web.get("/questions")
    questions = [
        html.unescape(q) for q in re.findall(r'<td class="question"[^>]*><a href="[^"]+">(.*?)</a>', listed.text)
    ]
    assert questions[0] == SEOUL and questions[-1] == SEOUL and len(questions) == 15
    assert questions.index("When did Bessent meet He Lifeng?") == 1

    downs = web.get("/questions?vote=down")
    assert "what&#39;s the weather in Seoul tomorrow?" in downs.text and "Davos" not in downs.text
    assert "student visa requirements" in web.get("/questions?kind=web").text
    assert "student visa requirements" not in web.get("/questions?kind=discord").text
    assert "No question matches" in web.get("/questions?from=2001-01-01&to=2001-01-02").text
    assert web.get("/questions?tier=bogus&vote=bogus&from=never&page=x").status_code == 200, "bad filters are ignored"

    detail = web.get(f"/questions/{ids[SEOUL]}")
    assert detail.status_code == 200 and "The answer as given" in detail.text and "👍 2" in detail.text
    assert web.get("/questions/" + "0" * 32).status_code == 404
    assert web.get("/questions/not-an-id").status_code == 404
    missing = web.get("/no-such-page")
    assert missing.status_code == 404 and "There is no such page" in missing.text


def test_overview_gaps_corpus_quality_and_export(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    seed_log(engine, log)
    web = logged_in(settings, engine, log)
    overview = web.get("/")
    assert "Latest questions" in overview.text and SEOUL in overview.text

    gaps = web.get("/gaps?days=30")
    counts = [int(n) for n in re.findall(r'<span class="gap-count"[^>]*>(\d+)</span>', gaps.text)]
    assert counts and counts == sorted(counts, reverse=True), "largest group first"
    assert sum(counts) == len(log.shortfalls())

    corpus = web.get("/corpus")
    for record in engine.documents():
        assert f'href="/doc/{record.doc_id}"' in corpus.text
    assert "china-sends-he-lifeng-to-seoul.txt" in corpus.text and ">ready<" in corpus.text

    quality = web.get("/quality?days=7")
    assert quality.text.count('<svg class="chart"') == 3
    assert "of 2 answered" in quality.text or "answered" in quality.text
    assert re.search(r"<title>\d{4}-\d\d-\d\d: \d+ of \d+ (answered|closest|none)</title>", quality.text)
    assert "voted up" in quality.text

    export_page = web.get("/export?days=0")
    assert "Download JSONL" in export_page.text
    download = web.get("/export.jsonl?days=0")
    assert download.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in download.headers["content-disposition"]
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert {line["kind"] for line in lines} == {"declined", "feedback-down"}
    assert len({line["q"] for line in lines}) == len(lines)
    path = settings.data_dir / "gaps.jsonl"
    path.write_text(download.text, encoding="utf-8")
    assert len(load_cases(path)) == len(lines), "the export is `citebot eval` input"


def test_an_empty_log_renders_every_page(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    web = logged_in(settings, engine, log)
    for path in PAGES:
        page = web.get(path)
        assert page.status_code == 200 and "Traceback" not in page.text, path
    assert "No declined or 👎 questions" in web.get("/gaps").text
    assert "No questions in this period" in web.get("/quality").text


def test_the_log_switched_off_says_so(settings: Settings, engine: Engine) -> None:
    off = QuestionLog.for_settings(settings.model_copy(update={"question_log": False}))
    web = client(settings, engine, off)
    web.post("/login", data={"token": TOKEN})
    page = web.post("/ask", data={"question": SEOUL, "csrf": csrf_of(web.get("/ask"))})
    assert "neutral staging ground" in page.text and "in the log" not in page.text
    assert "CITEBOT_QUESTION_LOG=false" in page.text and off.count() == 0


# ------------------------------------------------------------------------------------------------- commands


def wait_for_http(url: str, process: subprocess.Popen[str], timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the process ended: {process.stderr.read() if process.stderr else ''}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    try:
        _out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
    return process.returncode, err


def test_citebot_web_serves_the_console(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(settings, CITEBOT_WEB_TOKEN=TOKEN)
    process = subprocess.Popen(
        [str(VENV_BIN / "citebot"), "web", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        login = wait_for_http(f"http://127.0.0.1:{port}/login", process)
        assert login.status_code == 200 and "CITEBOT_WEB_TOKEN" in login.text
        assert httpx.get(f"http://127.0.0.1:{port}/questions").status_code == 303
    finally:
        code, err = stop(process)
    assert f"console on http://127.0.0.1:{port}/ (log in with CITEBOT_WEB_TOKEN)" in err
    assert TOKEN not in err
    assert code == 0


def test_citebot_web_refuses_a_public_bind_without_a_token_and_a_taken_port(settings: Settings, tmp_path: Path) -> None:
    from tests.conftest import citebot

    refused = citebot("web", "--host", "0.0.0.0", "--port", str(free_port()), env=cli_env(settings), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "CITEBOT_WEB_TOKEN" in refused.stderr and "Traceback" not in refused.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = citebot("web", "--port", str(port), env=cli_env(settings), cwd=tmp_path)
    assert busy.returncode == 1 and busy.stderr.count("\n") == 1
    assert f"cannot serve the console on 127.0.0.1:{port}" in busy.stderr and "--port" in busy.stderr
    assert citebot("web", "--port", "99999", env=cli_env(settings), cwd=tmp_path).returncode == 2


def test_listen_reports_a_taken_port_in_one_line() -> None:
    first = listen("127.0.0.1", 0)
    try:
        from bot.errors import ConsoleError

        with pytest.raises(ConsoleError, match="cannot serve the console"):
            listen("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()


async def test_citebot_discord_serves_the_console_on_citebot_web_port(settings: Settings, tmp_path: Path) -> None:
    from tests.test_discord_e2e import TOKEN as BOT_TOKEN

    port = free_port()
    async with FakeDiscord(token=BOT_TOKEN) as fake:
        env = cli_env(
            settings,
            **fake.bot_env(),
            CITEBOT_WEB_PORT=str(port),
        )
        process = subprocess.Popen(
            [str(VENV_BIN / "citebot"), "discord"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            import asyncio

            page = await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/corpus", process)
            assert page.status_code == 200 and "Corpus" in page.text, "open on loopback without a token"
            await fake.wait_for_session(timeout=30)  # the bot connected too: both run in one process
        finally:
            code, err = await asyncio.to_thread(stop, process)
    assert code == 0, err
    assert f"console on http://127.0.0.1:{port}/" in err
