"""bot/feedback.py: the SQLite feedback store and `citebot feedback export`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bot.config import Settings
from bot.evaluation import load_cases
from bot.feedback import FEEDBACK_FILE, FeedbackStore, export_command
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
    store = FeedbackStore(tmp_path / "fb" / "feedback.sqlite3")
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

    reopened = FeedbackStore(store.path)  # survives a restart
    assert [a.answer_id for a in reopened.voted()] == [answer_id]


def test_export_writes_eval_cases(settings: Settings) -> None:
    store = FeedbackStore(settings.data_dir / FEEDBACK_FILE)
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
