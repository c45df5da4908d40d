"""The question log: every question citebot answers (Discord, the REPL, `citebot ask`, the console), the answer as it
was given, the 👍/👎 votes on it and the operators' labels, in one SQLite file under `CITEBOT_DATA_DIR`
(`questions.sqlite3`; a `feedback.sqlite3` from when it held only Discord feedback is renamed at first open, and older
schemas are migrated in place). This module must not import discord or
the web stack: it is core code, and each adapter makes one call to record.

Why SQLite, and how it stays safe with several writers: the bot (one process per shard group), every `citebot ask`,
the REPL and the console all write the same file. It runs in WAL mode (readers never wait for a writer), every write
is one `BEGIN IMMEDIATE` transaction with a busy timeout, and a write that still meets "database is locked" is
retried with backoff instead of dropped.

Why a writer thread: an answer must never wait for the disk. `record_answer` only queues the row and returns its
id at once (from the event loop too); one thread per process writes whatever has queued since its last write in a
single transaction (a batch). Reads and votes first wait for this process's queued rows (`flush`), so a vote on an
answer posted a moment ago finds it; `close()` (also run at exit) writes what is left. If the disk refuses a write
the rows stay queued and are retried; only rows still unwritten when the process ends are lost, and that is logged.

Privacy: Discord user ids are never stored. Votes and questions carry a keyed hash of the id (HMAC-SHA256 with a
random salt kept in `<file>.salt` beside the database, mode 0600): one user's votes still count once per answer,
and a copy of the database alone cannot be matched against a member list. `CITEBOT_LOG_RETENTION_DAYS` (default
90) prunes older questions with their votes; `CITEBOT_QUESTION_LOG=false` records nothing new (Discord answers then
carry no vote buttons, since their votes could not be stored).

Tables (schema version 2, `PRAGMA user_version`):
- `answers(answer_id, question, answer, citations JSON, abstained, created_at, support, confidence, latency_ms,
  channel_kind discord|repl|cli|web, guild_id, channel_id, user_hash, note)`; `citations` holds the citations as
  `citebot ask --json` gives them, so the cited documents and offsets are there;
- `votes(answer_id, user_hash, vote up|down, voted_at, guild_id, channel_id, message_id)`, one row per (answer,
  user): a second click by the same user replaces the first;
- `labels(label_id, question, answer_id, verdict answers|unanswerable, doc_id, start, end, quote, source,
  origin console|import, labelled_by, created_at, undone_at, undone_by)` (schema version 3): what an operator said
  of a question: this sentence answers it (a document and offsets, with the quote and source as they were, so a
  label on a document that changed since is found and flagged), or nothing in the corpus does. A label is undone by
  stamping it (`undone_at`), never deleted before the log's retention takes it; `citebot train` learns from the
  labels that stand (`bot.learning`);
- `training_runs(run_id, started_at, started_by, finished_at, status running|published|kept|failed, message,
  outcome JSON, pid)`: each `citebot train` (from the command line or the console's Quality page), its progress
  and its figures.

`citebot feedback export --votes down|up|all [--declined]` writes one JSONL line per question: first the questions
operators labelled (`{"q", "evidence": [the quotes marked as answering], "kind": "label"}` or `{"q",
"unanswerable": true, "kind": "label"}`), then the voted ones (the latest answer of each distinct question; its
verdict is the majority of its votes, ties count as down so problems are not hidden):

- 👍 `{"q": question, "evidence": [cited quotes], "answer_any": [], "kind": "feedback-up"}` — a ready regression
  case: the engine must keep citing one of these quotes.
- 👎 `{"q": question, "evidence": [], "answer_any": [], "kind": "feedback-down", "rejected_answer": text,
  "rejected_quotes": [quotes], "abstained": bool}` — a triage item, not a finished case: whether the corpus can
  answer the question is unknowable from a click, so a reviewer fills `evidence` (or sets `"unanswerable": true`)
  before adding it to an evaluation set. `citebot eval` ignores the extra keys.
- with `--declined`, also every unvoted question the bot declined (support `closest` or `none`), in the 👎 shape
  with `"kind": "declined"`: the topics the corpus is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, TextIO, TypeVar, get_args

from bot.config import Settings
from bot.types import Answer

log = logging.getLogger("citebot.question_log")

Vote = Literal["up", "down"]
VOTES: tuple[Vote, ...] = ("up", "down")
ChannelKind = Literal["discord", "repl", "cli", "web"]
CHANNEL_KINDS: tuple[ChannelKind, ...] = get_args(ChannelKind)
VoteFilter = Literal["up", "down", "voted", "unvoted"]
LOG_FILE = "questions.sqlite3"
LEGACY_FILE = "feedback.sqlite3"
SCHEMA_VERSION = 3

# SQLite's own wait for a lock held by another process, per statement...
BUSY_SECONDS = 5.0
# ...and after that, a write that still meets the lock is retried for about this long before it counts as failed.
LOCK_RETRY_SECONDS = 30.0
# Rows per transaction at most; whatever queued meanwhile is written in the next one.
MAX_BATCH = 500
# How often a long-running process prunes rows past the retention period.
PRUNE_EVERY_SECONDS = 3600.0
# Reads and votes wait at most this long for this process's queued answers (longer only when the disk is failing).
FLUSH_SECONDS = 5.0
# After a failed write, the writer waits this long before it tries the queued rows again.
RETRY_FAILED_AFTER_SECONDS = 5.0

_ANSWERS = """
CREATE TABLE IF NOT EXISTS answers (
    answer_id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    support TEXT NOT NULL DEFAULT 'answered',
    confidence REAL,
    latency_ms REAL,
    channel_kind TEXT NOT NULL DEFAULT 'discord',
    guild_id TEXT,
    channel_id TEXT,
    user_hash TEXT,
    note TEXT
)"""
_VOTES = """
CREATE TABLE IF NOT EXISTS votes (
    answer_id TEXT NOT NULL REFERENCES answers(answer_id) ON DELETE CASCADE,
    user_hash TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),
    voted_at TEXT NOT NULL,
    guild_id TEXT,
    channel_id TEXT,
    message_id TEXT,
    PRIMARY KEY (answer_id, user_hash)
)"""
_LABELS = """
CREATE TABLE IF NOT EXISTS labels (
    label_id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    answer_id TEXT REFERENCES answers(answer_id) ON DELETE CASCADE,
    verdict TEXT NOT NULL CHECK (verdict IN ('answers', 'unanswerable')),
    doc_id TEXT,
    start INTEGER,
    "end" INTEGER,
    quote TEXT,
    source TEXT,
    origin TEXT NOT NULL,
    labelled_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    undone_at TEXT,
    undone_by TEXT
)"""
_TRAINING_RUNS = """
CREATE TABLE IF NOT EXISTS training_runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    started_by TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'published', 'kept', 'failed')),
    message TEXT NOT NULL DEFAULT '',
    outcome TEXT,
    pid INTEGER
)"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS answers_by_time ON answers (created_at)",
    "CREATE INDEX IF NOT EXISTS votes_by_answer ON votes (answer_id)",
    "CREATE INDEX IF NOT EXISTS labels_by_answer ON labels (answer_id)",
    "CREATE INDEX IF NOT EXISTS labels_by_time ON labels (created_at)",
)
# Columns that schema version 1 (Discord feedback only) lacked, with what old rows get.
_ADDED_ANSWER_COLUMNS = (
    ("support", "TEXT NOT NULL DEFAULT 'answered'"),
    ("confidence", "REAL"),
    ("latency_ms", "REAL"),
    ("channel_kind", "TEXT NOT NULL DEFAULT 'discord'"),
    ("guild_id", "TEXT"),
    ("channel_id", "TEXT"),
    ("user_hash", "TEXT"),
    ("note", "TEXT"),
)
_INSERT_ANSWER = (
    "INSERT INTO answers (answer_id, question, answer, citations, abstained, created_at, support,"
    " confidence, latency_ms, channel_kind, guild_id, channel_id, user_hash, note)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (answer_id) DO NOTHING"
)
_SELECT_ANSWERS = (
    "SELECT a.answer_id, a.question, a.answer, a.citations, a.abstained, a.created_at, a.support, a.confidence,"
    " a.latency_ms, a.channel_kind, a.guild_id, a.channel_id, a.note,"
    " (SELECT COUNT(*) FROM votes v WHERE v.answer_id = a.answer_id AND v.vote = 'up') AS up,"
    " (SELECT COUNT(*) FROM votes v WHERE v.answer_id = a.answer_id AND v.vote = 'down') AS down,"
    " a.rowid AS seq"
    " FROM answers a"
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer as it was given, where and how fast, with the votes it received."""

    answer_id: str
    question: str
    text: str
    citations: list[dict[str, Any]]
    abstained: bool
    created_at: str
    up: int = 0
    down: int = 0
    support: str = "answered"
    confidence: float | None = None
    latency_ms: float | None = None
    channel_kind: str = "discord"
    guild_id: str | None = None
    channel_id: str | None = None
    note: str | None = None

    @property
    def quotes(self) -> list[str]:
        return [str(citation.get("quote", "")) for citation in self.citations]

    @property
    def verdict(self) -> Vote | None:
        """The majority of the votes, ties counting as down (so problems are not hidden); None when unvoted."""
        if not self.up and not self.down:
            return None
        return "up" if self.up > self.down else "down"

    @property
    def declined(self) -> bool:
        return self.support != "answered"


Verdict = Literal["answers", "unanswerable"]
LabelOrigin = Literal["console", "import"]


@dataclass(frozen=True, slots=True)
class Label:
    """What an operator said of a question: `answers` (the sentence `quote` at `start:end` of `doc_id` answers it)
    or `unanswerable` (nothing in the corpus does); who said it, when, and whether it was undone since."""

    label_id: str
    question: str
    verdict: Verdict
    labelled_by: str
    created_at: str
    origin: str = "console"
    answer_id: str | None = None
    doc_id: str | None = None
    start: int | None = None
    end: int | None = None
    quote: str | None = None
    source: str | None = None
    undone_at: str | None = None
    undone_by: str | None = None

    @property
    def standing(self) -> bool:
        return self.undone_at is None

    @property
    def key(self) -> str:
        """The question as labels group it: the same words, whatever the case and spacing."""
        return question_key(self.question)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class QuestionFilter:
    """What the console's Questions page narrows the log to; every part is optional. Days are UTC dates."""

    support: str | None = None
    vote: VoteFilter | None = None
    channel_kind: str | None = None
    since: date | None = None
    until: date | None = None
    text: str | None = None

    def sql(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.support:
            clauses.append("a.support = ?")
            params.append(self.support)
        if self.channel_kind:
            clauses.append("a.channel_kind = ?")
            params.append(self.channel_kind)
        if self.since:
            clauses.append("a.created_at >= ?")
            params.append(self.since.isoformat())
        if self.until:
            clauses.append("a.created_at < ?")
            params.append((self.until + timedelta(days=1)).isoformat())
        if self.text:
            clauses.append("a.question LIKE ? ESCAPE '\\'")
            escaped = self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
        votes = {
            "up": "up > down",
            "down": "down >= up AND down > 0",
            "voted": "up + down > 0",
            "unvoted": "up + down = 0",
        }
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        if self.vote:
            # `up`/`down` are computed columns: filter on them around the row query.
            return f"SELECT * FROM ({_SELECT_ANSWERS}{where}) WHERE {votes[self.vote]}", params
        return f"{_SELECT_ANSWERS}{where}", params


@dataclass(frozen=True, slots=True)
class Activity:
    """The figures of one logged answer that the Quality page charts, without its texts."""

    created_at: str
    support: str
    confidence: float | None
    latency_ms: float | None
    up: int
    down: int


class _Row(NamedTuple):
    """A queued answer; the user id is hashed by the writer thread, off the caller's path."""

    answer_id: str
    question: str
    answer: str
    citations: str
    abstained: int
    created_at: str
    support: str
    confidence: float
    latency_ms: float | None
    channel_kind: str
    guild_id: str | None
    channel_id: str | None
    user_id: str | None
    note: str | None


_STOP = object()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _is_locked(error: sqlite3.OperationalError) -> bool:
    message = str(error).lower()
    return "locked" in message or "busy" in message


class QuestionLog:
    """The question log. Cheap to construct: the file is opened (created, migrated) on first use.

    Thread-safe: each call, and each batch of the writer thread, opens its own short connection (SQLite
    connections must not cross threads).
    """

    def __init__(self, path: Path, *, enabled: bool = True, retention_days: int = 90) -> None:
        self.path = path
        self.enabled = enabled
        self.retention_days = retention_days
        self._ready = False
        self._ready_lock = threading.Lock()
        self._salt: bytes | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._progress = threading.Condition()
        self._queued = 0
        self._written = 0
        self._closed = False
        self._last_error: str | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> QuestionLog:
        _adopt_legacy_file(settings.data_dir)
        return cls(
            settings.data_dir / LOG_FILE,
            enabled=settings.question_log,
            retention_days=settings.log_retention_days,
        )

    # -- opening -------------------------------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        with closing(self._open()) as db:
            yield db

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _ensure_schema(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._open()) as db:
                self._retry(lambda: db.execute("PRAGMA journal_mode = WAL"))
                self._retry(lambda: self._migrate(db))
            self._ready = True

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Create the tables, or bring an older file to this version (1: Discord feedback only; 2: no labels), in
        one transaction so processes that start together cannot both migrate."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version < SCHEMA_VERSION:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "answers" in tables and version < 2:
                    self._migrate_v1(db, tables)
                db.execute(_ANSWERS)
                db.execute(_VOTES)
                db.execute(_LABELS)
                db.execute(_TRAINING_RUNS)
                for statement in _INDEXES:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _migrate_v1(self, db: sqlite3.Connection, tables: set[str]) -> None:
        present = {row[1] for row in db.execute("PRAGMA table_info(answers)")}
        for column, declaration in _ADDED_ANSWER_COLUMNS:
            if column not in present:
                db.execute(f"ALTER TABLE answers ADD COLUMN {column} {declaration}")
        db.execute("UPDATE answers SET support = 'none' WHERE abstained = 1 AND support = 'answered'")
        if "votes" not in tables:
            return
        # Version 1 kept raw Discord user ids: rebuild the table with their hashes (and the cascade on delete).
        old = {row[1] for row in db.execute("PRAGMA table_info(votes)")}
        extra = [column for column in ("guild_id", "channel_id", "message_id") if column in old]
        db.execute("ALTER TABLE votes RENAME TO votes_v1")
        db.execute(_VOTES)
        db.create_function("citebot_user_hash", 1, self.user_hash, deterministic=True)
        columns = ", ".join(["answer_id", "user_hash", "vote", "voted_at", *extra])
        chosen = ", ".join(["answer_id", "citebot_user_hash(user_id)", "vote", "voted_at", *extra])
        db.execute(f"INSERT OR REPLACE INTO votes ({columns}) SELECT {chosen} FROM votes_v1")
        db.execute("DROP TABLE votes_v1")

    def _retry(self, action: Callable[[], T]) -> T:
        """Run `action`, retrying while another process holds the lock (beyond the busy timeout)."""
        deadline = time.monotonic() + LOCK_RETRY_SECONDS
        pause = 0.01
        while True:
            try:
                return action()
            except sqlite3.OperationalError as error:
                if not _is_locked(error) or time.monotonic() > deadline:
                    raise
                time.sleep(pause + secrets.randbelow(10) / 1000)
                pause = min(pause * 2, 0.5)

    # -- privacy -------------------------------------------------------------------------------------------------

    def user_hash(self, user_id: int | str) -> str:
        """The keyed hash that stands for a user id (see the module docstring)."""
        if self._salt is None:
            self._salt = self._load_salt()
        return hmac.new(self._salt, str(user_id).encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def _load_salt(self) -> bytes:
        """Read the salt, or create it atomically (write a private file, then link it into place: of processes
        racing, exactly one link succeeds and the others read that one)."""
        target = self.path.with_suffix(".salt")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f"{target.name}.{uuid.uuid4().hex}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(temporary, target)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return target.read_text(encoding="ascii").strip().encode("ascii")

    # -- writing -------------------------------------------------------------------------------------------------

    def record_answer(
        self,
        answer: Answer,
        channel_kind: ChannelKind = "discord",
        *,
        guild_id: int | str | None = None,
        channel_id: int | str | None = None,
        user_id: int | str | None = None,
        answer_id: str | None = None,
    ) -> str | None:
        """Queue an answer for the log and return its id at once (the id vote buttons carry); None when the log
        is off. Never blocks on the disk, so adapters may call it from an event loop."""
        if not self.enabled:
            return None
        if channel_kind not in CHANNEL_KINDS:
            raise ValueError(f"channel_kind must be one of {', '.join(CHANNEL_KINDS)}, not {channel_kind!r}")
        answer_id = answer_id or uuid.uuid4().hex
        citations = json.dumps([citation.to_json() for citation in answer.citations], ensure_ascii=False)
        row = _Row(
            answer_id,
            answer.question,
            answer.text,
            citations,
            int(answer.abstained),
            _now(),
            answer.support,
            answer.confidence,
            answer.timings_ms.get("total"),
            channel_kind,
            _optional_id(guild_id),
            _optional_id(channel_id),
            _optional_id(user_id),
            answer.note,
        )
        self._start_writer()
        with self._progress:
            self._queued += 1
        self._queue.put(row)
        return answer_id

    def record_vote(
        self,
        answer_id: str,
        user_id: int | str,
        vote: Vote,
        *,
        guild_id: int | str | None = None,
        channel_id: int | str | None = None,
        message_id: int | str | None = None,
    ) -> bool:
        """One vote per user per answer; a second click replaces the first. False if the answer is unknown (or the
        log is off). Blocking: waits for this process's queued answers first, so call it off the event loop."""
        if vote not in VOTES:
            raise ValueError(f"vote must be 'up' or 'down', not {vote!r}")
        if not self.enabled:
            return False
        self.flush()
        row = (
            answer_id,
            self.user_hash(user_id),
            vote,
            _now(),
            _optional_id(guild_id),
            _optional_id(channel_id),
            _optional_id(message_id),
        )

        def write(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM answers WHERE answer_id = ?", (answer_id,)).fetchone() is None:
                return False
            db.execute(
                "INSERT INTO votes (answer_id, user_hash, vote, voted_at, guild_id, channel_id, message_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (answer_id, user_hash) DO UPDATE SET"
                " vote = excluded.vote, voted_at = excluded.voted_at, guild_id = excluded.guild_id,"
                " channel_id = excluded.channel_id, message_id = excluded.message_id",
                row,
            )
            return True

        with self._connect() as db:
            return self._retry(lambda: _transaction(db, write))

    def prune(self, now: datetime | None = None) -> int:
        """Delete questions (with their votes and labels) and imported labels older than the retention period;
        returns how many questions went."""
        if self.retention_days <= 0:
            return 0
        cutoff = ((now or datetime.now(UTC)) - timedelta(days=self.retention_days)).isoformat()

        def delete(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM labels WHERE created_at < ? AND answer_id IS NULL", (cutoff,))
            return db.execute("DELETE FROM answers WHERE created_at < ?", (cutoff,)).rowcount

        with self._connect() as db:
            removed = self._retry(lambda: _transaction(db, delete))
        if removed:
            log.info("pruned %d question(s) older than %d days from the question log", removed, self.retention_days)
        return removed

    def add_label(
        self,
        question: str,
        verdict: Verdict,
        labelled_by: str,
        *,
        answer_id: str | None = None,
        doc_id: str | None = None,
        start: int | None = None,
        end: int | None = None,
        quote: str | None = None,
        source: str | None = None,
        origin: LabelOrigin = "console",
    ) -> Label:
        """Record a label (see `Label`); marking a sentence already marked for the question returns that label.
        A verdict replaces the standing labels of the other verdict for the same question (an operator who marks a
        sentence after saying "nothing answers it" changed their mind), which are stamped undone by them."""
        if verdict not in ("answers", "unanswerable"):
            raise ValueError(f"verdict must be 'answers' or 'unanswerable', not {verdict!r}")
        if verdict == "answers" and (doc_id is None or start is None or end is None or quote is None):
            raise ValueError("an `answers` label names its sentence: doc_id, start, end and quote")
        self.flush()
        key = question_key(question)
        label = Label(
            uuid.uuid4().hex,
            " ".join(question.split()),
            verdict,
            labelled_by,
            _now(),
            origin,
            answer_id,
            doc_id,
            start,
            end,
            quote,
            source,
        )

        def write(db: sqlite3.Connection) -> Label:
            standing = [_label_from(row) for row in db.execute(f"{_SELECT_LABELS} WHERE undone_at IS NULL")]
            mine = [found for found in standing if found.key == key]
            for found in mine:
                if found.verdict == verdict and (
                    verdict == "unanswerable" or (found.doc_id, found.start) == (doc_id, start)
                ):
                    return found
            stale = [found.label_id for found in mine if found.verdict != verdict]
            db.executemany(
                "UPDATE labels SET undone_at = ?, undone_by = ? WHERE label_id = ?",
                [(label.created_at, labelled_by, label_id) for label_id in stale],
            )
            db.execute(
                'INSERT INTO labels (label_id, question, answer_id, verdict, doc_id, start, "end", quote, source,'
                " origin, labelled_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    label.label_id,
                    label.question,
                    answer_id,
                    verdict,
                    doc_id,
                    start,
                    end,
                    quote,
                    source,
                    origin,
                    labelled_by,
                    label.created_at,
                ),
            )
            return label

        with self._connect() as db:
            return self._retry(lambda: _transaction(db, write))

    def undo_label(self, label_id: str, undone_by: str) -> bool:
        """Stamp a label undone (it stays in the log, shown as undone); False when it is unknown or undone already."""

        def write(db: sqlite3.Connection) -> bool:
            changed = db.execute(
                "UPDATE labels SET undone_at = ?, undone_by = ? WHERE label_id = ? AND undone_at IS NULL",
                (_now(), undone_by, label_id),
            ).rowcount
            return bool(changed)

        with self._connect() as db:
            return self._retry(lambda: _transaction(db, write))

    def labels(self, question: str | None = None, include_undone: bool = False) -> list[Label]:
        """Labels, oldest first: those of one question (whatever its case and spacing), or all."""
        self.flush()
        where = "" if include_undone else " WHERE undone_at IS NULL"
        with self._connect() as db:
            found = [_label_from(row) for row in db.execute(f"{_SELECT_LABELS}{where} ORDER BY created_at, rowid")]
        if question is None:
            return found
        key = question_key(question)
        return [label for label in found if label.key == key]

    def start_training(self, started_by: str, pid: int | None = None) -> str | None:
        """Record a training run as running and return its id; None when another run is running (a run whose process
        is gone counts as failed)."""
        run_id = uuid.uuid4().hex

        def write(db: sqlite3.Connection) -> str | None:
            for other, other_pid in db.execute("SELECT run_id, pid FROM training_runs WHERE status = 'running'"):
                if other_pid is not None and _alive(int(other_pid)):
                    return None
                db.execute(
                    "UPDATE training_runs SET status = 'failed', finished_at = ?, message = ? WHERE run_id = ?",
                    (_now(), "the training process ended without finishing", other),
                )
            db.execute(
                "INSERT INTO training_runs (run_id, started_at, started_by, status, pid)"
                " VALUES (?, ?, ?, 'running', ?)",
                (run_id, _now(), started_by, pid),
            )
            return run_id

        with self._connect() as db:
            return self._retry(lambda: _transaction(db, write))

    def update_training(
        self,
        run_id: str,
        *,
        message: str,
        status: str = "running",
        outcome: dict[str, Any] | None = None,
        pid: int | None = None,
    ) -> None:
        finished = None if status == "running" else _now()

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE training_runs SET status = ?, message = ?, finished_at = COALESCE(?, finished_at),"
                " outcome = COALESCE(?, outcome), pid = COALESCE(?, pid) WHERE run_id = ?",
                (status, message, finished, json.dumps(outcome) if outcome is not None else None, pid, run_id),
            )

        with self._connect() as db:
            self._retry(lambda: _transaction(db, write))

    def training_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest training runs, newest first; a run whose process is gone without finishing is marked failed."""
        with self._connect() as db:
            for run_id, pid in db.execute("SELECT run_id, pid FROM training_runs WHERE status = 'running'").fetchall():
                if pid is not None and not _alive(int(pid)):
                    self.update_training(
                        run_id, message="the training process ended without finishing", status="failed"
                    )
            rows = db.execute(
                "SELECT run_id, started_at, started_by, finished_at, status, message, outcome FROM training_runs"
                " ORDER BY started_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        names = ("run_id", "started_at", "started_by", "finished_at", "status", "message", "outcome")
        runs = [dict(zip(names, row, strict=True)) for row in rows]
        for run in runs:
            run["outcome"] = json.loads(run["outcome"]) if run["outcome"] else None
        return runs

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait until every answer this process queued so far is written; False if that took over `timeout`."""
        with self._progress:
            target = self._queued
            return self._progress.wait_for(lambda: self._written >= target, timeout)

    def close(self) -> None:
        """Write what is queued and stop the writer thread (idempotent; also runs at interpreter exit)."""
        with self._writer_lock:
            writer, self._closed = self._writer, True
        if writer is None:
            return
        self._queue.put(_STOP)
        writer.join(LOCK_RETRY_SECONDS + 10)
        lost = self._queued - self._written
        if lost:
            log.error(
                "%d question(s) could not be written to the question log %s: %s",
                lost,
                self.path,
                self._last_error or "the writer did not finish in time",
            )

    def _start_writer(self) -> None:
        with self._writer_lock:
            if self._closed:
                raise RuntimeError("the question log is closed")
            if self._writer is not None:
                return
            self._writer = threading.Thread(target=self._write_loop, name="citebot-question-log", daemon=True)
            self._writer.start()
            atexit.register(self.close)

    def _write_loop(self) -> None:
        """Write whatever has queued, one transaction per batch; keep rows that failed and try them again."""
        pending: list[_Row] = []
        stopping = False
        pruned_at = -float("inf")
        while True:
            if not pending:
                item = self._queue.get()
                if item is _STOP:
                    return
                pending.append(item)
            while len(pending) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                pending.append(item)
            try:
                self._insert([self._parameters(row) for row in pending])
            except (sqlite3.Error, OSError) as error:
                self._last_error = " ".join(str(error).split()) or type(error).__name__
                log.error("cannot write the question log %s: %s; retrying", self.path, self._last_error)
                if stopping:
                    return
                time.sleep(RETRY_FAILED_AFTER_SECONDS)
                continue
            if time.monotonic() - pruned_at > PRUNE_EVERY_SECONDS:
                pruned_at = time.monotonic()
                try:
                    self.prune()
                except (sqlite3.Error, OSError) as error:
                    log.warning("cannot prune the question log %s: %s", self.path, error)
            with self._progress:
                self._written += len(pending)
                self._progress.notify_all()
            pending = []
            if stopping:
                return

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        with self._connect() as db:
            self._retry(lambda: _transaction(db, lambda db: db.executemany(_INSERT_ANSWER, rows)))

    def _parameters(self, row: _Row) -> tuple[Any, ...]:
        return (*row[:12], None if row.user_id is None else self.user_hash(row.user_id), row.note)

    # -- reading -------------------------------------------------------------------------------------------------

    def get(self, answer_id: str) -> StoredAnswer | None:
        found = self._select(f"{_SELECT_ANSWERS} WHERE a.answer_id = ?", [answer_id])
        return found[0] if found else None

    def votes_of(self, answer_id: str) -> list[tuple[Vote, str]]:
        """The votes on one answer, oldest first: (vote, voted_at)."""
        self.flush()
        with self._connect() as db:
            rows = db.execute(
                "SELECT vote, voted_at FROM votes WHERE answer_id = ? ORDER BY voted_at", (answer_id,)
            ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def voted(self) -> list[StoredAnswer]:
        """Answers with at least one vote, oldest first."""
        query, params = QuestionFilter(vote="voted").sql()
        return self._select(f"{query} ORDER BY created_at, seq", params)

    def questions(self, where: QuestionFilter | None = None, limit: int = 50, offset: int = 0) -> list[StoredAnswer]:
        """The log, newest first, narrowed by `where`."""
        query, params = (where or QuestionFilter()).sql()
        return self._select(f"{query} ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?", [*params, limit, offset])

    def count(self, where: QuestionFilter | None = None) -> int:
        query, params = (where or QuestionFilter()).sql()
        self.flush()
        with self._connect() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM ({query})", params).fetchone()[0])

    def shortfalls(self, since: date | None = None, limit: int = 1000) -> list[StoredAnswer]:
        """The newest questions the bot declined (support closest or none) or that were voted down."""
        query, params = QuestionFilter(since=since).sql()
        return self._select(
            f"SELECT * FROM ({query}) WHERE support != 'answered' OR (down >= up AND down > 0)"
            " ORDER BY created_at DESC, seq DESC LIMIT ?",
            [*params, limit],
        )

    def activity(self, since: date | None = None) -> list[Activity]:
        """Tier, confidence, latency and votes of every answer since `since`, oldest first (for charts)."""
        query, params = QuestionFilter(since=since).sql()
        self.flush()
        with self._connect() as db:
            rows = db.execute(
                f"SELECT created_at, support, confidence, latency_ms, up, down FROM ({query}) ORDER BY created_at, seq",
                params,
            ).fetchall()
        return [Activity(row[0], row[1], row[2], row[3], int(row[4]), int(row[5])) for row in rows]

    def _select(self, query: str, params: Sequence[Any]) -> list[StoredAnswer]:
        self.flush()
        with self._connect() as db:
            rows = db.execute(query, params).fetchall()
        return [
            StoredAnswer(
                answer_id=row[0],
                question=row[1],
                text=row[2],
                citations=json.loads(row[3]),
                abstained=bool(row[4]),
                created_at=row[5],
                support=row[6],
                confidence=row[7],
                latency_ms=row[8],
                channel_kind=row[9],
                guild_id=row[10],
                channel_id=row[11],
                note=row[12],
                up=int(row[13]),
                down=int(row[14]),
            )
            for row in rows
        ]


def _transaction(db: sqlite3.Connection, action: Callable[[sqlite3.Connection], T]) -> T:
    """`action` inside BEGIN IMMEDIATE ... COMMIT: the write lock is taken up front, so a busy database shows up
    here (and is retried) instead of halfway through."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = action(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


_SELECT_LABELS = (
    'SELECT label_id, question, verdict, labelled_by, created_at, origin, answer_id, doc_id, start, "end", quote,'
    " source, undone_at, undone_by FROM labels"
)


def _label_from(row: Sequence[Any]) -> Label:
    return Label(*row)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _optional_id(value: int | str | None) -> str | None:
    return None if value is None else str(value)


def question_key(question: str) -> str:
    """A question as the log groups it: the same words, whatever the case and spacing."""
    return " ".join(question.split()).casefold()


def _adopt_legacy_file(data_dir: Path) -> None:
    """Rename the log's old file (and its WAL, shared-memory and salt files) to its current name, once."""
    legacy, current = data_dir / LEGACY_FILE, data_dir / LOG_FILE
    if not legacy.exists() or current.exists():
        return
    moves = [(legacy.with_name(legacy.name + suffix), current.with_name(current.name + suffix)) for suffix in WAL_FILES]
    moves += [(legacy.with_suffix(".salt"), current.with_suffix(".salt")), (legacy, current)]  # the database last
    for old, new in moves:
        with contextlib.suppress(FileNotFoundError):  # absent, or another process moved it first
            old.replace(new)


WAL_FILES = ("-wal", "-shm")


def label_lines(store: QuestionLog) -> Iterator[dict[str, Any]]:
    """The labelled questions as `citebot eval` cases: the quotes marked as answering (`evidence`), or
    `"unanswerable": true`; one per distinct question, in the order they were first labelled."""
    grouped: dict[str, list[Label]] = {}
    for label in store.labels():
        grouped.setdefault(label.key, []).append(label)
    for labels in grouped.values():
        question = labels[-1].question
        if any(label.verdict == "unanswerable" for label in labels):
            yield {"q": question, "unanswerable": True, "kind": "label"}
        else:
            quotes = list(dict.fromkeys(label.quote for label in labels if label.quote))
            yield {"q": question, "evidence": quotes, "answer_any": [], "kind": "label"}


def export_lines(
    store: QuestionLog, votes: str = "down", declined: bool = False, since: date | None = None
) -> Iterator[dict[str, Any]]:
    """The `citebot eval` cases for voted (and, with `declined`, declined) questions, oldest first, one per distinct
    question (its latest answer); see the module docstring for the shapes. Questions an operator labelled come as
    `label_lines` give them, first, and not again from their votes."""
    if votes not in ("up", "down", "all"):
        raise ValueError(f"votes must be up, down or all, not {votes!r}")
    labelled = set()
    for line in label_lines(store):
        labelled.add(question_key(str(line["q"])))
        yield line
    query, params = QuestionFilter(since=since).sql()
    wanted = "up + down > 0 OR support != 'answered'" if declined else "up + down > 0"
    latest: dict[str, StoredAnswer] = {}
    for stored in store._select(f"SELECT * FROM ({query}) WHERE {wanted} ORDER BY created_at, seq", params):
        latest.pop(question_key(stored.question), None)  # re-inserted: the order follows the latest answer
        latest[question_key(stored.question)] = stored
    for key, stored in latest.items():
        if key in labelled:
            continue
        verdict = stored.verdict
        if verdict is None:
            if declined:
                yield _rejected(stored, "declined")
            continue
        if votes != "all" and verdict != votes:
            continue
        if verdict == "up":
            yield {"q": stored.question, "evidence": stored.quotes, "answer_any": [], "kind": "feedback-up"}
        else:
            yield _rejected(stored, "feedback-down")


def _rejected(stored: StoredAnswer, kind: str) -> dict[str, Any]:
    return {
        "q": stored.question,
        "evidence": [],
        "answer_any": [],
        "kind": kind,
        "rejected_answer": stored.text,
        "rejected_quotes": stored.quotes,
        "abstained": stored.abstained,
    }


def export_command(settings: Settings, output: TextIO, votes: str = "down", declined: bool = False) -> int:
    """`citebot feedback export`: write the voted (and declined) questions as JSONL evaluation cases to `output`."""
    store = QuestionLog.for_settings(settings)
    for line in export_lines(store, votes, declined):
        output.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0
