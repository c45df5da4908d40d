"""bot/question_log.py: the question log (answers, votes, several writers, retention) and `citebot feedback export`."""

from __future__ import annotations

import io
import json
import multiprocessing
import sqlite3
import time
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bot import question_log
from bot.config import Settings
from bot.evaluation import load_cases
from bot.question_log import LEGACY_FILE, LOG_FILE, QuestionFilter, QuestionLog, export_command
from bot.types import Answer, Citation


def answer(question: str, abstained: bool = False) -> Answer:
    quote = f"evidence for {question}"
    cited = () if abstained else (Citation(1, "corpus/a.txt", "A", 0, len(quote), quote, 0.9),)
    return Answer(
        question, "no idea" if abstained else f"answer [1] to {question}", cited, "none" if abstained else "answered"
    )


def export(settings: Settings, votes: str) -> list[dict[str, object]]:
    output = io.StringIO()
    assert export_command(settings, output, votes) == 0
    return [json.loads(line) for line in output.getvalue().splitlines()]


def test_answers_and_votes_round_trip(tmp_path: Path) -> None:
    store = QuestionLog(tmp_path / "fb" / "question_log.sqlite3")
    answer_id = store.record_answer(answer("why?"))
    assert len(answer_id) == 32
    stored = store.get(answer_id)
    assert stored is not None and stored.question == "why?" and stored.quotes == ["evidence for why?"]
    assert stored.citations[0]["source"] == "corpus/a.txt" and not stored.abstained
    assert store.voted() == []

    assert store.record_vote(answer_id, 1, "up")
    assert store.record_vote(answer_id, 1, "down")  # the same user: replaces
    assert store.record_vote(answer_id, 2, "down")
    stored = store.get(answer_id)
    assert stored is not None and (stored.up, stored.down) == (0, 2)
    assert not store.record_vote("0" * 32, 1, "up"), "votes on unknown answers are not stored"
    with pytest.raises(ValueError):
        store.record_vote(answer_id, 1, "sideways")  # type: ignore[arg-type]

    reopened = QuestionLog(store.path)  # survives a restart
    assert [a.answer_id for a in reopened.voted()] == [answer_id]


def test_export_writes_eval_cases(settings: Settings) -> None:
    store = QuestionLog(settings.data_dir / LOG_FILE)
    good = store.record_answer(answer("good?"))
    bad = store.record_answer(answer("bad?"))
    abstained = store.record_answer(answer("unknown?", abstained=True))
    store.record_answer(answer("never voted?"))
    store.record_vote(good, 1, "up")
    store.record_vote(bad, 1, "down")
    store.record_vote(abstained, 1, "down")

    assert export(settings, "up") == [
        {"q": "good?", "evidence": ["evidence for good?"], "answer_any": [], "kind": "feedback-up"}
    ]
    down = export(settings, "down")
    assert [line["q"] for line in down] == ["bad?", "unknown?"]
    assert down[0]["kind"] == "feedback-down" and down[0]["rejected_answer"] == "answer [1] to bad?"
    assert down[0]["rejected_quotes"] == ["evidence for bad?"] and down[1]["abstained"] is True
    assert len(export(settings, "all")) == 3

    path = settings.data_dir / "cases.jsonl"
    output = io.StringIO()
    export_command(settings, output, "all")
    path.write_text(output.getvalue(), encoding="utf-8")
    cases = load_cases(path)  # the exported lines are valid `citebot eval` input
    assert [case.kind for case in cases] == ["feedback-up", "feedback-down", "feedback-down"]
    assert cases[0].evidence == ("evidence for good?",)


def test_export_of_an_empty_store(settings: Settings) -> None:
    assert export(settings, "all") == []
    with pytest.raises(ValueError):
        export(settings, "maybe")


# ------------------------------------------------------------------------------------------ the question log


def full_answer(question: str, support: str = "answered", confidence: float = 0.8) -> Answer:
    quote = f"evidence for {question}"
    cited = (Citation(1, "corpus/a.txt", "A", 10, 10 + len(quote), quote, 0.9, doc_id="d" * 32),)
    return Answer(question, f"answer [1] to {question}", cited, support, confidence, {"total": 12.5})  # type: ignore[arg-type]


def test_every_field_is_logged_and_user_ids_only_as_a_salted_hash(tmp_path: Path) -> None:
    store = QuestionLog(tmp_path / "log.sqlite3")
    user = 987654321987654321
    answer_id = store.record_answer(
        full_answer("who?", "closest", 0.4), "discord", guild_id=11, channel_id=22, user_id=user
    )
    assert answer_id is not None
    store.record_vote(answer_id, user, "down", guild_id=11, channel_id=22, message_id=33)
    stored = store.get(answer_id)
    assert stored is not None
    assert (stored.channel_kind, stored.guild_id, stored.channel_id) == ("discord", "11", "22")
    assert (stored.support, stored.confidence, stored.latency_ms) == ("closest", 0.4, 12.5)
    assert stored.citations[0]["doc_id"] == "d" * 32 and stored.citations[0]["start"] == 10
    assert (stored.up, stored.down, stored.verdict, stored.declined) == (0, 1, "down", True)
    assert [vote for vote, _at in store.votes_of(answer_id)] == ["down"]
    store.close()

    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("log.sqlite3"))
    assert str(user).encode() not in raw, "the raw Discord user id must never be stored"
    salt = tmp_path / "log.salt"
    assert salt.stat().st_mode & 0o777 == 0o600 and salt.read_text() not in raw.decode("latin-1")
    with sqlite3.connect(store.path) as db:
        hashes = {row[0] for row in db.execute("SELECT user_hash FROM answers UNION SELECT user_hash FROM votes")}
    assert hashes == {store.user_hash(user)} and len(store.user_hash(user)) == 32
    assert QuestionLog(tmp_path / "other.sqlite3").user_hash(user) != store.user_hash(user), "salted per log"


def test_the_log_runs_in_wal_mode(tmp_path: Path) -> None:
    store = QuestionLog(tmp_path / "log.sqlite3")
    store.record_answer(full_answer("q"), "cli")
    store.flush()
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_recording_never_waits_for_a_locked_database_and_retries_past_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(question_log, "BUSY_SECONDS", 0.05)  # SQLite gives up fast: only citebot's retry saves rows
    store = QuestionLog(tmp_path / "log.sqlite3")
    store.get("0" * 32)  # create the file
    transactions = 0
    real = question_log._transaction

    def counting(db: sqlite3.Connection, action: Any) -> Any:
        nonlocal transactions
        result = real(db, action)
        transactions += 1  # committed ones only (attempts that met the lock raise)
        return result

    monkeypatch.setattr(question_log, "_transaction", counting)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    started = time.perf_counter()
    ids = [store.record_answer(full_answer(f"q{i}"), "web") for i in range(100)]
    queued_in = time.perf_counter() - started
    time.sleep(0.4)  # well past the busy timeout: the writer is retrying
    blocker.execute("COMMIT")
    blocker.close()
    assert store.flush(timeout=10)
    assert queued_in < 0.5, f"queueing 100 answers took {queued_in:.2f} s: recording must not wait for the disk"
    assert store.count() == 100 and {s.answer_id for s in store.questions(limit=200)} == set(ids)
    assert transactions <= 3, f"{transactions} transactions for 100 rows: the writer must batch"


def _write_from_another_process(path: str, worker: int, count: int) -> None:
    store = QuestionLog(Path(path))
    for index in range(count):
        answer_id = store.record_answer(full_answer(f"worker {worker} question {index}"), "cli")
        if index % 5 == 0:
            assert answer_id is not None
            store.record_vote(answer_id, worker, "up")
    store.close()


def test_several_processes_write_at_once_without_losing_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_from_another_process, args=(str(path), w, 60)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = QuestionLog(path)
    assert store.count() == 240
    assert store.count(QuestionFilter(vote="up")) == 4 * 12
    assert len({s.question for s in store.questions(limit=1000)}) == 240


def test_retention_prunes_old_questions_with_their_votes(tmp_path: Path) -> None:
    store = QuestionLog(tmp_path / "log.sqlite3", retention_days=90)
    old = store.record_answer(full_answer("old"), "repl")
    new = store.record_answer(full_answer("new"), "repl")
    assert old and new
    store.record_vote(old, 1, "down")
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE answers SET created_at = ? WHERE answer_id = ?", ("2020-01-01T00:00:00.000+00:00", old))
    assert store.prune() == 1
    assert store.get(old) is None and store.get(new) is not None
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0

    forever = QuestionLog(store.path, retention_days=0)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE answers SET created_at = ?", ("2000-01-01T00:00:00.000+00:00",))
    assert forever.prune() == 0 and forever.count() == 1


def test_the_writer_prunes_as_it_goes(tmp_path: Path) -> None:
    store = QuestionLog(tmp_path / "log.sqlite3", retention_days=1)
    store.record_answer(full_answer("ancient"), "cli")
    store.flush()
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE answers SET created_at = ?", ("2020-01-01T00:00:00.000+00:00",))
    fresh = QuestionLog(store.path, retention_days=1)  # a new process: its first write prunes
    fresh.record_answer(full_answer("today"), "cli")
    fresh.flush()
    assert [s.question for s in fresh.questions()] == ["today"]


def test_switched_off_the_log_records_nothing(settings: Settings) -> None:
    off = QuestionLog.for_settings(settings.model_copy(update={"question_log": False}))
    assert off.record_answer(full_answer("private?"), "discord", user_id=5) is None
    assert not off.record_vote("0" * 32, 5, "up")
    assert off.count() == 0 and not off.enabled
    assert Settings(_env_file=None, CITEBOT_QUESTION_LOG="false").question_log is False  # type: ignore[call-arg]


def test_filters_and_order(tmp_path: Path) -> None:
    store = QuestionLog(tmp_path / "log.sqlite3")
    ids = {}
    for question, kind, support in [
        ("a", "discord", "answered"),
        ("b", "cli", "none"),
        ("c", "web", "closest"),
        ("d", "repl", "answered"),
    ]:
        ids[question] = store.record_answer(full_answer(question, support), kind)  # type: ignore[arg-type]
    store.record_vote(ids["a"], 1, "up")
    store.record_vote(ids["d"], 1, "down")
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE answers SET created_at = '2024-05-01T10:00:00.000+00:00' WHERE question = 'a'")
    assert [s.question for s in store.questions()] == ["d", "c", "b", "a"], "newest first"
    assert [s.question for s in store.questions(QuestionFilter(support="none"))] == ["b"]
    assert [s.question for s in store.questions(QuestionFilter(channel_kind="web"))] == ["c"]
    assert [s.question for s in store.questions(QuestionFilter(vote="up"))] == ["a"]
    assert [s.question for s in store.questions(QuestionFilter(vote="down"))] == ["d"]
    assert [s.question for s in store.questions(QuestionFilter(vote="unvoted"))] == ["c", "b"]
    may = QuestionFilter(since=date(2024, 5, 1), until=date(2024, 5, 1))
    assert [s.question for s in store.questions(may)] == ["a"]
    assert [s.question for s in store.questions(QuestionFilter(until=date(2024, 4, 30)))] == []
    assert [s.question for s in store.questions(QuestionFilter(text="%"))] == [], "LIKE wildcards are literal"
    assert [s.question for s in store.shortfalls()] == ["d", "c", "b"]
    assert [s.question for s in store.questions(limit=2, offset=2)] == ["b", "a"]


def test_export_with_declined_questions(settings: Settings) -> None:
    store = QuestionLog.for_settings(settings)
    store.record_answer(full_answer("unknown topic?", "none"), "discord")
    store.record_answer(full_answer("Unknown  topic?", "none"), "web")  # the same question again: one case
    store.record_answer(full_answer("vague?", "closest"), "cli")
    store.record_answer(full_answer("fine?"), "cli")
    store.close()
    lines = export(settings, "down")
    assert lines == [], "without --declined only votes count"
    output = io.StringIO()
    assert export_command(settings, output, "down", declined=True) == 0
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    assert [(line["q"], line["kind"]) for line in lines] == [("Unknown  topic?", "declined"), ("vague?", "declined")]
    assert lines[0]["rejected_quotes"] == ["evidence for Unknown  topic?"]


_VERSION_1 = """
CREATE TABLE answers (answer_id TEXT PRIMARY KEY, question TEXT NOT NULL, answer TEXT NOT NULL,
    citations TEXT NOT NULL, abstained INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE votes (answer_id TEXT NOT NULL REFERENCES answers(answer_id), user_id TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('up', 'down')), voted_at TEXT NOT NULL, PRIMARY KEY (answer_id, user_id));
"""


def test_a_version_1_feedback_file_is_migrated_in_place(settings: Settings) -> None:
    path = settings.data_dir / LEGACY_FILE  # its name then: renamed to questions.sqlite3 at first open
    path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(_VERSION_1)
        db.execute(
            "INSERT INTO answers VALUES ('a' , 'old question?', 'old answer', '[]', 1, '2025-01-01T00:00:00+00:00')"
        )
        db.execute("INSERT INTO votes VALUES ('a', '424242', 'down', '2025-01-01T00:01:00+00:00')")
    store = QuestionLog.for_settings(settings)
    stored = store.get("a")
    assert stored is not None and (stored.question, stored.down, stored.support) == ("old question?", 1, "none")
    assert stored.channel_kind == "discord"
    assert store.record_vote("a", 424242, "up"), "the same user's new click replaces the migrated vote"
    assert (store.get("a").up, store.get("a").down) == (1, 0)  # type: ignore[union-attr]
    assert not path.exists() and store.path == settings.data_dir / LOG_FILE
    with closing(sqlite3.connect(store.path)) as db:
        assert "424242" not in {row[0] for row in db.execute("SELECT user_hash FROM votes")}
        assert db.execute("PRAGMA user_version").fetchone()[0] == question_log.SCHEMA_VERSION


def test_the_old_file_name_is_adopted_with_its_salt(settings: Settings) -> None:
    """A log kept as feedback.sqlite3 keeps its questions, votes and salt (a user's vote still counts once)."""
    old = QuestionLog(settings.data_dir / LEGACY_FILE)
    answer_id = old.record_answer(answer("kept?"))
    assert answer_id and old.record_vote(answer_id, 7, "down")
    old.close()
    store = QuestionLog.for_settings(settings)
    assert store.path.name == LOG_FILE and not (settings.data_dir / LEGACY_FILE).exists()
    assert not (settings.data_dir / LEGACY_FILE).with_suffix(".salt").exists()
    assert store.record_vote(answer_id, 7, "up")
    kept = store.get(answer_id)
    assert kept is not None and (kept.up, kept.down) == (1, 0), "the same user: the vote was replaced"
    store.close()
