"""A question log with some history, for the console's tests and screenshots: questions from every channel over
the last days, answered and declined, some voted on, plus two documents that try to inject markup."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.engine import Engine
from bot.question_log import ChannelKind, QuestionLog
from bot.types import DocumentContent, DocumentRecord

SEOUL = "why Seoul and not Beijing?"
XSS_QUESTION = '<script>alert("question")</script> what about <img src=x onerror=alert(1)>?'
XSS_DOCUMENT = """# Notes on <script>alert("document")</script> markup

Plain text keeps its angle brackets: <b>not bold</b> and <script>alert("body")</script>.
A link that must stay text: [click me](javascript:alert('link')) and <a href="javascript:alert(2)">this one</a>.
"""

# (question, channel, days ago, votes as (user, vote))
HISTORY: list[tuple[str, ChannelKind, int, list[tuple[int, str]]]] = [
    (SEOUL, "discord", 0, [(1, "up"), (2, "up")]),
    ("When did Bessent meet He Lifeng?", "discord", 0, [(3, "up")]),
    ("how do I apply for a student visa?", "discord", 0, []),
    ("student visa requirements", "web", 1, []),
    ("can international students get a visa?", "discord", 1, []),
    ("what is the student visa policy?", "discord", 2, [(4, "down")]),
    ("what did they discuss in Davos?", "repl", 1, [(5, "up")]),
    ("what's the weather in Seoul tomorrow?", "discord", 2, [(6, "down"), (7, "down")]),
    ("is it going to rain in Seoul?", "discord", 3, [(6, "down")]),
    ("weather forecast for Seoul", "cli", 3, []),
    ("what tariffs were agreed?", "discord", 4, [(3, "up")]),
    ("who won the football final?", "discord", 5, [(8, "down")]),
    ("who leads the U.S. side?", "web", 6, [(9, "up")]),
    ("Who is He Lifeng?", "discord", 7, [(2, "up")]),
    (SEOUL, "discord", 8, [(10, "up")]),
]
CONFIDENCE = {"answered": 0.78, "closest": 0.31, "none": 0.06}


def add_markup_documents(engine: Engine, folder: Path) -> None:
    """A Markdown file with script tags and `javascript:` links, ingested like any other document."""
    from ingest.pipeline import IngestPipeline

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "markup.md").write_text(XSS_DOCUMENT, encoding="utf-8")
    IngestPipeline(engine.store, engine.embedder).run([folder])


def add_hostile_web_record(engine: Engine) -> DocumentRecord:
    """A web document whose URL is a `javascript:` link (as a hostile feed could supply)."""
    text = "A page about Seoul logistics that arrived with a hostile link."
    record = DocumentRecord(
        "f" * 32,
        ("javascript:alert('url')",),
        "Hostile <em>feed</em> item",
        0,
        "2025-05-01T00:00:00+00:00",
        url="javascript:alert('url')",
        published="2025-04-30",
        origin="feed",
    )
    engine.store.put_documents([record], {record.doc_id: DocumentContent(text, ())})
    return record


def seed_log(engine: Engine, log: QuestionLog) -> dict[str, str]:
    """Ask the engine the HISTORY questions, log them as asked over the last days, vote; returns question -> id of
    its newest answer."""
    now = datetime.now(UTC)
    ids: dict[str, str] = {}
    dated: list[tuple[str, str]] = []
    for index, (question, kind, days_ago, votes) in enumerate(reversed(HISTORY)):
        answer = engine.ask(question)
        answer = replace(answer, confidence=CONFIDENCE[answer.support] + (index % 3) * 0.05)
        answer_id = log.record_answer(answer, kind, guild_id=100 if kind == "discord" else None, channel_id=200)
        assert answer_id is not None
        for user, vote in votes:
            log.record_vote(answer_id, user, vote)  # type: ignore[arg-type]
        ids[question] = answer_id
        moment = now - timedelta(days=days_ago, seconds=len(HISTORY) - index)
        dated.append((moment.isoformat(timespec="microseconds"), answer_id))
    log.flush()
    with sqlite3.connect(log.path) as db:
        db.executemany("UPDATE answers SET created_at = ? WHERE answer_id = ?", dated)
    return ids
