"""Feedback on posted answers: every answer the Discord bot posts and every 👍/👎 click on it, in SQLite.

Why SQLite in `data_dir`: votes must outlive restarts (the buttons are persistent), need no server, and are
exported later into `citebot eval` cases. This module must not import discord: it is core code, adapters call it.

Tables: `answers(answer_id, question, answer, citations JSON, abstained, created_at)` and
`votes(answer_id, user_id, vote 'up'|'down', voted_at, guild_id, channel_id, message_id)` with one row per
(answer, user): a second click by the same user replaces the first. The database runs in WAL mode, so shard
processes sharing the file write one after another while readers go on.

`citebot feedback export --votes down|up|all` writes one JSONL line per voted answer (by its latest-majority vote,
ties count as down so problems are not hidden):

- 👍 `{"q": question, "evidence": [cited quotes], "answer_any": [], "kind": "feedback-up"}` — a ready regression
  case: the engine must keep citing one of these quotes.
- 👎 `{"q": question, "evidence": [], "answer_any": [], "kind": "feedback-down", "rejected_answer": text,
  "rejected_quotes": [quotes], "abstained": bool}` — a triage item, not a finished case: whether the corpus can
  answer the question is unknowable from a click, so a reviewer fills `evidence` (or sets `"unanswerable": true`)
  before adding it to an evaluation set. `citebot eval` ignores the extra keys.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

from bot.config import Settings
from bot.types import Answer

Vote = Literal["up", "down"]
VOTES: tuple[Vote, ...] = ("up", "down")
FEEDBACK_FILE = "feedback.sqlite3"
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    answer_id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    answer_id TEXT NOT NULL REFERENCES answers(answer_id),
    user_id TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),
    voted_at TEXT NOT NULL,
    guild_id TEXT,
    channel_id TEXT,
    message_id TEXT,
    PRIMARY KEY (answer_id, user_id)
);
"""
# Where a vote was cast (so a 👎 can be traced to its message); added to databases made before these columns.
_VOTE_PLACE = ("guild_id", "channel_id", "message_id")
# Several processes (shards) write one file: a writer waits this long for another's lock, and a write that still
# finds the database locked is retried this many times.
_BUSY_TIMEOUT_SECONDS = 10
_LOCKED_RETRIES = 5


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer as it was posted, with the votes it received."""

    answer_id: str
    question: str
    text: str
    citations: list[dict[str, Any]]
    abstained: bool
    created_at: str
    up: int = 0
    down: int = 0

    @property
    def quotes(self) -> list[str]:
        return [str(citation.get("quote", "")) for citation in self.citations]


def _now() -> str:
    return datetime.now(UTC).isoformat()


class FeedbackStore:
    """Thread-safe: the bot writes from the event loop and from worker threads, so each call opens its own
    short connection (SQLite connections must not cross threads) and a lock serialises writers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode = WAL")  # persistent: set once, kept in the file
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(votes)")}
            for column in _VOTE_PLACE:
                if column not in columns:
                    db.execute(f"ALTER TABLE votes ADD COLUMN {column} TEXT")

    @classmethod
    def for_settings(cls, settings: Settings) -> FeedbackStore:
        return cls(settings.data_dir / FEEDBACK_FILE)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_SECONDS)) as db, db:  # commits or rolls back
            db.execute("PRAGMA foreign_keys = ON")
            yield db

    def _write(self, action: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run one write transaction; retried when another process holds the database lock for too long."""
        for attempt in range(_LOCKED_RETRIES + 1):
            try:
                with self._lock, self._connect() as db:
                    db.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
                    return action(db)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == _LOCKED_RETRIES:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def record_answer(self, answer: Answer, answer_id: str | None = None) -> str:
        """Store a posted answer; returns its id (a new uuid unless given), which the vote buttons carry."""
        answer_id = answer_id or uuid.uuid4().hex
        citations = json.dumps([citation.to_json() for citation in answer.citations], ensure_ascii=False)
        self._write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                (answer_id, answer.question, answer.text, citations, int(answer.abstained), _now()),
            )
        )
        return answer_id

    def record_vote(
        self,
        answer_id: str,
        user_id: int | str,
        vote: Vote,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        message_id: int | None = None,
    ) -> bool:
        """One vote per user per answer; a second click replaces the first. False if the answer is unknown."""
        if vote not in VOTES:
            raise ValueError(f"vote must be 'up' or 'down', not {vote!r}")
        place = tuple(None if value is None else str(value) for value in (guild_id, channel_id, message_id))

        def write(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM answers WHERE answer_id = ?", (answer_id,)).fetchone() is None:
                return False
            db.execute(
                "INSERT INTO votes (answer_id, user_id, vote, voted_at, guild_id, channel_id, message_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (answer_id, user_id) DO UPDATE SET vote = excluded.vote,"
                " voted_at = excluded.voted_at, guild_id = excluded.guild_id, channel_id = excluded.channel_id,"
                " message_id = excluded.message_id",
                (answer_id, str(user_id), vote, _now(), *place),
            )
            return True

        return self._write(write)

    def get(self, answer_id: str) -> StoredAnswer | None:
        found = self._select("WHERE a.answer_id = ?", "", (answer_id,))
        return found[0] if found else None

    def voted(self) -> list[StoredAnswer]:
        """Answers with at least one vote, oldest first."""
        return self._select("", "HAVING COUNT(v.vote) > 0", ())

    def _select(self, where: str, having: str, params: Sequence[Any]) -> list[StoredAnswer]:
        query = (
            "SELECT a.answer_id, a.question, a.answer, a.citations, a.abstained, a.created_at,"
            " COALESCE(SUM(v.vote = 'up'), 0), COALESCE(SUM(v.vote = 'down'), 0)"
            f" FROM answers a LEFT JOIN votes v ON v.answer_id = a.answer_id {where}"
            f" GROUP BY a.answer_id {having} ORDER BY a.created_at, a.rowid"
        )
        with self._connect() as db:
            rows = db.execute(query, params).fetchall()
        return [
            StoredAnswer(row[0], row[1], row[2], json.loads(row[3]), bool(row[4]), row[5], int(row[6]), int(row[7]))
            for row in rows
        ]


def export_lines(store: FeedbackStore, votes: str = "down") -> Iterator[dict[str, Any]]:
    """The `citebot eval` cases for voted answers; see the module docstring for the two shapes."""
    if votes not in ("up", "down", "all"):
        raise ValueError(f"votes must be up, down or all, not {votes!r}")
    for stored in store.voted():
        verdict: Vote = "up" if stored.up > stored.down else "down"
        if votes != "all" and verdict != votes:
            continue
        if verdict == "up":
            yield {"q": stored.question, "evidence": stored.quotes, "answer_any": [], "kind": "feedback-up"}
        else:
            yield {
                "q": stored.question,
                "evidence": [],
                "answer_any": [],
                "kind": "feedback-down",
                "rejected_answer": stored.text,
                "rejected_quotes": stored.quotes,
                "abstained": stored.abstained,
            }


def export_command(settings: Settings, output: TextIO, votes: str = "down") -> int:
    """`citebot feedback export`: write the voted answers as JSONL evaluation cases to `output`."""
    store = FeedbackStore.for_settings(settings)
    for line in export_lines(store, votes):
        output.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0
