"""Operators' labels and `citebot train` (`bot.learning`): marking and undoing in the console, with CSRF and escaping;
labels surviving a restart and exported as eval lines; Discord votes as labels; a label on a document that changed
since; two operators labelling at once; a corrupt trained model; running engines switching to a published model;
the decision to keep the model in use; training that gives the same model twice; and `citebot feedback import` +
`citebot train` end to end with the real model (`model` mark)."""

from __future__ import annotations

import html
import json
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bot import learning
from bot.answering.scorer import CONFIDENCE_FILE, META_FILE, MODEL_DIR, RANKER_FILE
from bot.answering.training import train
from bot.config import Settings
from bot.engine import Engine
from bot.question_log import QuestionLog, export_lines
from bot.web import create_app, listen, serving
from ingest.pipeline import IngestPipeline
from tests.conftest import VENV_BIN, cli_env

TOKEN = "a-long-operator-token-0123456789"
LOCAL = "http://127.0.0.1:8080"
QUESTION = "Where will He Lifeng and Bessent meet next?"
SENTENCE_FORM = re.compile(
    r'<span class="quote">“(?P<quote>[^”]*)”</span>(?:(?!</li>).)*?name="doc_id" value="(?P<doc_id>\w+)">\s*'
    r'<input type="hidden" name="start" value="(?P<start>\d+)">\s*'
    r'<input type="hidden" name="end" value="(?P<end>\d+)">',
    re.S,
)


def asked(engine: Engine, log: QuestionLog, question: str = QUESTION) -> str:
    answer_id = log.record_answer(engine.ask(question), "web")
    assert answer_id is not None
    log.flush()
    return answer_id


def operator(settings: Settings, engine: Engine, log: QuestionLog, name: str) -> tuple[TestClient, str]:
    """A logged-in console client and its CSRF token."""
    configured = settings.model_copy(update={"web_token": SecretStr(TOKEN)})
    web = TestClient(create_app(configured, engine, log), base_url=LOCAL, follow_redirects=False)
    assert web.post("/login", data={"token": TOKEN, "name": name}).status_code == 303
    found = re.search(r'name="csrf" value="([^"]+)"', web.get("/ask").text)
    assert found
    return web, found[1]


def sentences_on(page: str) -> list[dict[str, str]]:
    return [{**m.groupdict(), "quote": html.unescape(m["quote"])} for m in SENTENCE_FORM.finditer(page)]


# -- labels in the console ----------------------------------------------------------------------------------------


def test_an_operator_marks_sentences_says_nothing_answers_and_undoes(
    settings: Settings, engine: Engine, log: QuestionLog
) -> None:
    answer_id = asked(engine, log)
    web, csrf = operator(settings, engine, log, "Ana <b>Ops</b>")
    page = web.get(f"/questions/{answer_id}").text
    offered = sentences_on(page)
    assert offered, "the question's page lists the sentences of its passages, each with a button"
    first = offered[0]
    form = {"csrf": csrf, "verdict": "answers", "doc_id": first["doc_id"], "start": first["start"], "end": first["end"]}

    assert web.post(f"/questions/{answer_id}/label", data={**form, "csrf": "forged"}).status_code == 403
    assert log.labels() == [], "no label without the page's CSRF token"
    assert web.post(f"/questions/{answer_id}/label", data=form).status_code == 303
    (label,) = log.labels(QUESTION.upper())  # the same question, whatever its case
    assert (label.verdict, label.labelled_by, label.doc_id) == ("answers", "Ana <b>Ops</b>", first["doc_id"])
    text, _ = engine.document_text(first["doc_id"])  # type: ignore[misc]
    assert label.quote == text[label.start : label.end] == first["quote"]
    shown = web.get(f"/questions/{answer_id}").text
    assert "✓ answers it" in shown and "Ana &lt;b&gt;Ops&lt;/b&gt;" in shown and "<b>Ops</b>" not in shown
    assert web.post(f"/questions/{answer_id}/label", data=form).status_code == 303
    assert len(log.labels()) == 1, "marking the same sentence twice keeps one label"

    bogus = {**form, "start": str(int(first["start"]) + 1)}
    refused = web.post(f"/questions/{answer_id}/label", data=bogus)
    assert refused.status_code == 400 and "Not a sentence" in refused.text

    nothing = {"csrf": csrf, "verdict": "unanswerable"}
    assert web.post(f"/questions/{answer_id}/label", data=nothing).status_code == 303
    standing = log.labels()
    assert [item.verdict for item in standing] == ["unanswerable"], "the other verdict's labels are undone"
    assert "Nothing in the corpus answers it" in web.get(f"/questions/{answer_id}").text

    undo = web.post(f"/labels/{standing[0].label_id}/undo", data={"csrf": csrf, "next": f"/questions/{answer_id}"})
    assert undo.status_code == 303 and undo.headers["location"] == f"/questions/{answer_id}"
    assert log.labels() == []
    every = log.labels(include_undone=True)
    assert len(every) == 2 and all(item.undone_by == "Ana <b>Ops</b>" for item in every)
    assert "undone by Ana &lt;b&gt;Ops&lt;/b&gt;" in web.get(f"/questions/{answer_id}").text


def test_labels_from_the_document_view(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    """A sentence the retrieved passages miss is marked from its document, opened from the question's page."""
    answer_id = asked(engine, log, "what happened to the price of cheese?")
    web, csrf = operator(settings, engine, log, "Ana")
    record = next(record for record in engine.documents() if "davos" in record.source)
    page = web.get(f"/doc/{record.doc_id}?label_for={answer_id}").text
    assert "Label “what happened to the price of cheese?”" in page
    offered = sentences_on(page)
    assert len(offered) == len(engine.document_sentences(record.doc_id)) > 10
    last = offered[-1]
    form = {"csrf": csrf, "verdict": "answers", **{key: last[key] for key in ("doc_id", "start", "end")}}
    assert web.post(f"/questions/{answer_id}/label", data=form).status_code == 303
    assert [label.quote for label in log.labels()] == [last["quote"]]
    assert web.get(f"/doc/{record.doc_id}?label_for=not-an-id").text.count("This answers it") == 0


def test_labels_survive_a_restart_and_are_exported_first(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    answer_id = asked(engine, log)
    start, end, quote = engine.document_sentences(engine.documents()[0].doc_id)[3]
    doc_id = engine.documents()[0].doc_id
    log.add_label(QUESTION, "answers", "Ana", answer_id=answer_id, doc_id=doc_id, start=start, end=end, quote=quote)
    log.add_label("is there a ferry?", "unanswerable", "Ben", origin="import")
    log.close()
    reopened = QuestionLog.for_settings(settings)
    assert [(label.verdict, label.labelled_by) for label in reopened.labels()] == [
        ("answers", "Ana"),
        ("unanswerable", "Ben"),
    ]
    lines = list(export_lines(reopened, votes="all"))
    assert lines[:2] == [
        {"q": QUESTION, "evidence": [quote], "answer_any": [], "kind": "label"},
        {"q": "is there a ferry?", "unanswerable": True, "kind": "label"},
    ]
    reopened.close()


def test_labels_follow_the_log_retention(settings: Settings, engine: Engine) -> None:
    from datetime import UTC, datetime, timedelta

    log = QuestionLog.for_settings(settings.model_copy(update={"log_retention_days": 30}))
    answer_id = asked(engine, log)
    doc_id = engine.documents()[0].doc_id
    start, end, quote = engine.document_sentences(doc_id)[3]
    log.add_label(QUESTION, "answers", "Ana", answer_id=answer_id, doc_id=doc_id, start=start, end=end, quote=quote)
    log.add_label("is there a ferry?", "unanswerable", "Ben", origin="import")
    assert log.prune(datetime.now(UTC) + timedelta(days=29)) == 0 and len(log.labels()) == 2
    assert log.prune(datetime.now(UTC) + timedelta(days=31)) == 1
    assert log.labels() == []
    log.close()


def test_discord_votes_teach_the_first_quote(engine: Engine, log: QuestionLog) -> None:
    up = asked(engine, log, "why Seoul?")
    down = asked(engine, log, "What did Bessent say about the talks in Davos?")
    labelled = asked(engine, log, QUESTION)
    assert log.record_vote(up, 1, "up") and log.record_vote(down, 2, "down") and log.record_vote(labelled, 3, "down")
    log.add_label(QUESTION, "unanswerable", "Ana", answer_id=labelled)
    taught, stale = learning.taught_questions(log, lambda doc_id: True)
    by_question = {item.question: item for item in taught}
    first_up = log.get(up).citations[0]  # type: ignore[union-attr]
    assert by_question["why Seoul?"].answers == [(first_up["doc_id"], first_up["start"], first_up["end"])]
    assert (
        by_question["What did Bessent say about the talks in Davos?"].rejected
        and not by_question["What did Bessent say about the talks in Davos?"].answers
    )
    assert by_question[QUESTION].unanswerable and not by_question[QUESTION].rejected, "a label outweighs a vote"
    assert stale == []


# -- labels on documents that change ------------------------------------------------------------------------------


def test_a_label_on_a_changed_document_is_flagged_and_never_trained_on(
    settings: Settings, engine: Engine, log: QuestionLog, corpus: Path
) -> None:
    answer_id = asked(engine, log)
    web, csrf = operator(settings, engine, log, "Ana")
    first = sentences_on(web.get(f"/questions/{answer_id}").text)[0]
    form = {"csrf": csrf, "verdict": "answers", **{key: first[key] for key in ("doc_id", "start", "end")}}
    assert web.post(f"/questions/{answer_id}/label", data=form).status_code == 303
    changed = next(path for path in corpus.glob("*.txt") if engine.document(first["doc_id"]).source.endswith(path.name))  # type: ignore[union-attr]
    changed.write_text(changed.read_text(encoding="utf-8") + "\n\nA late correction was added.\n", encoding="utf-8")
    IngestPipeline(engine.store, engine.embedder).run([Path("corpus")])

    page = web.get(f"/questions/{answer_id}").text
    assert "The document changed since this label was set: it is not used for training." in page
    assert f"“{html.escape(first['quote'], quote=True)}”" in page or f"“{html.escape(first['quote'])}”" in page
    taught, stale = learning.taught_questions(log, lambda doc_id: engine.document(doc_id) is not None)
    assert [label.doc_id for label in stale] == [first["doc_id"]]
    assert taught == [], "the only label is stale: nothing to learn from"
    assert len(log.labels()) == 1, "kept, not silently dropped"


# -- two operators at once ----------------------------------------------------------------------------------------


def test_two_operators_label_at_once(settings: Settings, engine: Engine, log: QuestionLog) -> None:
    """Two browsers, two sessions, posting at the same moment against the console served on a real port."""
    ids = [asked(engine, log, question) for question in ("why Seoul?", "who leads China's side?", QUESTION)]
    configured = settings.model_copy(update={"web_token": SecretStr(TOKEN)})
    with serving(configured, engine, log, listen("127.0.0.1", 0)) as url:
        sessions = {}
        for name in ("Ana", "Ben"):
            client = httpx.Client(base_url=url.rstrip("/"), timeout=60)
            assert client.post("/login", data={"token": TOKEN, "name": name}).status_code == 303
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ask").text)[1]  # type: ignore[index]
            sessions[name] = (client, csrf)
        work = {
            name: [
                (answer_id, sentence)
                for answer_id in ids
                for sentence in sentences_on(sessions[name][0].get(f"/questions/{answer_id}").text)[offset::2][:4]
            ]
            for name, offset in (("Ana", 0), ("Ben", 1))
        }
        barrier = threading.Barrier(2)
        failures: list[str] = []

        def label_all(name: str) -> None:
            client, csrf = sessions[name]
            barrier.wait()
            for answer_id, sentence in work[name]:
                form = {"csrf": csrf, "verdict": "answers", **{k: sentence[k] for k in ("doc_id", "start", "end")}}
                status = client.post(f"/questions/{answer_id}/label", data=form).status_code
                if status != 303:
                    failures.append(f"{name}: {status}")

        threads = [threading.Thread(target=label_all, args=(name,)) for name in sessions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for client, _ in sessions.values():
            client.close()
    assert failures == []
    stored = log.labels()
    for name in ("Ana", "Ben"):
        mine = {(label.doc_id, str(label.start)) for label in stored if label.labelled_by == name}
        assert mine == {(sentence["doc_id"], sentence["start"]) for _, sentence in work[name]}
    assert len(stored) == len(work["Ana"]) + len(work["Ben"])


# -- which model answers ------------------------------------------------------------------------------------------


def shipped_files(threshold: float | None = None) -> dict[str, bytes]:
    files = {name: (MODEL_DIR / name).read_bytes() for name in (RANKER_FILE, CONFIDENCE_FILE, META_FILE)}
    if threshold is not None:
        meta = json.loads(files[META_FILE])
        meta["thresholds"]["answer"] = threshold
        files[META_FILE] = json.dumps(meta).encode()
    return files


def test_a_corrupt_trained_model_is_never_used(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    shipped = engine.ask("why Seoul?")
    engine.store.put_answer_model("20260101-000000-corrupt", {RANKER_FILE: b"tree\ngarbage", META_FILE: b"{"})
    caplog.set_level(logging.WARNING)
    fresh = Engine(settings)
    answer = fresh.ask("why Seoul?")
    assert fresh.model_version is None and answer.confidence == pytest.approx(shipped.confidence)
    assert "cannot use the answer model 20260101-000000-corrupt" in caplog.text and "shipped model" in caplog.text

    engine.store.put_answer_model("20260101-000001-good", shipped_files(threshold=0.99))
    engine.corpus.refresh(fresh=True)
    assert engine.model_version == "20260101-000001-good"
    engine.store.put_answer_model("20260101-000002-corrupt", {RANKER_FILE: b"", CONFIDENCE_FILE: b"", META_FILE: b""})
    engine.corpus.refresh(fresh=True)
    assert engine.model_version == "20260101-000001-good", "a corrupt model never replaces a working one"
    assert engine.ask("why Seoul?").support != "answered"  # the working model's level (0.99) still applies


def test_running_engines_switch_to_a_model_published_by_another_process(
    settings: Settings, engine: Engine, log: QuestionLog
) -> None:
    before = engine.ask("why Seoul?")
    assert engine.model_version is None
    configured = settings.model_copy(update={"web_token": SecretStr(TOKEN)})
    web = TestClient(create_app(configured, engine, log), base_url=LOCAL, follow_redirects=False)
    web.post("/login", data={"token": TOKEN})
    assert "the model shipped with citebot" in web.get("/quality").text
    publish = (
        "import sys, json; from pathlib import Path; from bot.config import Settings; from bot.store import ChunkStore;"
        "from bot.embeddings import HashingEmbedder; files = json.loads(sys.stdin.read());"
        "store = ChunkStore(Settings(data_dir=Path(sys.argv[1]), embedding_model='hashing', _env_file=None),"
        " HashingEmbedder()); store.put_answer_model('20260102-000000-other', {k: v.encode('latin-1') for k, v in"
        " files.items()})"
    )
    files = {name: data.decode("latin-1") for name, data in shipped_files(threshold=0.999).items()}
    subprocess.run(
        [sys.executable, "-c", publish, str(settings.data_dir)], input=json.dumps(files), text=True, check=True
    )
    engine.corpus.refresh(fresh=True)  # what the engine does by itself every few seconds
    after = engine.ask("why Seoul?")
    assert engine.model_version == "20260102-000000-other"
    assert after.confidence == pytest.approx(before.confidence) and after.support != "answered"
    assert "20260102-000000-other" in web.get("/quality").text
    engine.store.use_answer_model(None)
    engine.corpus.refresh(fresh=True)
    assert engine.model_version is None and engine.ask("why Seoul?").support == before.support


# -- training -------------------------------------------------------------------------------------------------------


SHIPPED = learning.load_shipped()


def small_shipped(count: int = 240) -> list[learning.Group]:
    """A slice of the shipped training data, every kind of question in it, so that a test trains in seconds."""
    groups = SHIPPED
    picked = [g for g in groups if g.source != "squad1"][::3][:count]
    return [*picked, *[g for g in groups if g.source == "squad1"][:60]]


def test_training_twice_gives_the_same_model() -> None:
    groups = small_shipped()
    first, second = train(groups), train(groups)
    assert first.ranker.model_to_string() == second.ranker.model_to_string()
    assert first.confidence.model_to_string() == second.confidence.model_to_string()
    assert first.thresholds == second.thresholds and first.platt == second.platt


def test_the_shipped_training_data_loads_as_answering_computes_it() -> None:
    groups = SHIPPED
    sources = {g.source for g in groups}
    assert {"seed", "casual", "news", "squad1"} <= sources and len(groups) > 2000
    assert all(g.features.dtype == np.float32 and len(g.features) == len(g.labels) for g in groups[:50])
    assert (learning.SHIPPED_DATA.stat().st_size) < 3_000_000, "small enough to ship in the package"


def label_some(engine: Engine, log: QuestionLog, questions: list[tuple[str, str | None]]) -> None:
    """Label each question: the candidate sentence holding `evidence`, or unanswerable (None)."""
    for question, evidence in questions:
        if evidence is None:
            log.add_label(question, "unanswerable", "Ana")
            continue
        held = [c for c in engine.passage_sentences(question, 30) if evidence in c.quote]
        assert held, f"no candidate of {question!r} holds {evidence!r}"
        for c in held:
            log.add_label(
                question, "answers", "Ana", doc_id=c.hit.chunk.doc_id, start=c.start, end=c.end, quote=c.quote
            )


SEED_LABELS: list[tuple[str, str | None]] = [
    ("why seoul", "neutral staging ground"),
    ("who's leading china's side", "He Lifeng"),
    ("where did the two first sit down", "Geneva"),
    ("when are the seoul talks", "May"),
    ("what did bessent praise", "praised"),
    ("how high did tariffs go", "100"),
    ("what did they sign in the end", None),
    ("who paid for the summit hotel", None),
    ("how many staff came along", None),
    ("is the ferry running", None),
]


def figures(answerable: int, unanswerable: int, first: int, answered: int, right: int, kept: int) -> dict[str, float]:
    """`judge`'s figures from counts."""
    return {
        "questions": float(answerable + unanswerable),
        "answerable": float(answerable),
        "first_quote": first / answerable,
        "answered": answered / answerable,
        "answered_precision": right / max(1, answered),
        "unanswerable_not_answered": kept / unanswerable,
    }


def test_the_judge_of_a_new_model_counts_wrong_confident_answers() -> None:
    old = figures(answerable=5, unanswerable=3, first=3, answered=3, right=3, kept=3)
    assert learning.wrong_confident(old) == 0
    # One more wrong confident answer on eight questions is chance: the precision falls from 1.00 to 0.75.
    assert learning.no_worse(figures(5, 3, first=3, answered=4, right=3, kept=3), old)
    # Two are not, whether to answerable questions or to questions nothing answers.
    assert not learning.no_worse(figures(5, 3, first=3, answered=5, right=3, kept=3), old)
    assert not learning.no_worse(figures(5, 3, first=3, answered=4, right=3, kept=2), old)
    # A worse first quote never is.
    assert not learning.no_worse(figures(5, 3, first=2, answered=2, right=2, kept=3), old)


def test_retraining_keeps_the_model_in_use_when_the_new_one_does_worse(
    engine: Engine, log: QuestionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    label_some(engine, log, SEED_LABELS)
    monkeypatch.setattr(learning, "load_shipped", lambda: small_shipped())
    monkeypatch.setattr(learning, "no_worse", lambda new, old: False)
    monkeypatch.setattr(learning.Taught, "aside", property(lambda self: len(self.question) % 2 == 0))
    lines: list[str] = []
    outcome = learning.retrain(engine, log, lines.append)
    assert outcome.version is None and "keeping the model in use" in outcome.message
    assert engine.store.answer_model() is None
    assert any("asking the labelled questions" in line for line in lines) and any("fold" in line for line in lines)


def test_retraining_publishes_a_model_every_engine_switches_to(
    settings: Settings, engine: Engine, log: QuestionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    label_some(engine, log, SEED_LABELS)
    monkeypatch.setattr(learning, "load_shipped", lambda: small_shipped())
    monkeypatch.setattr(learning, "no_worse", lambda new, old: True)
    outcome = learning.retrain(engine, log)
    assert outcome.version is not None and outcome.labelled == len(SEED_LABELS)
    assert set(outcome.before) == set(outcome.after) >= {"first_quote", "evidence_shown", "answered_precision"}
    assert engine.store.answer_model() == outcome.version
    other = Engine(settings)
    other.ask("why Seoul?")
    assert other.model_version == outcome.version
    meta = json.loads((settings.data_dir / "models" / "answerer" / outcome.version / META_FILE).read_text())
    assert meta["labels"] == outcome.labelled - outcome.aside and meta["judged"]["version"] == outcome.version


def test_a_run_whose_process_died_shows_as_failed(log: QuestionLog) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_id = log.start_training("Ana", pid=gone.pid)
    assert run_id is not None
    (run,) = log.training_runs()
    assert (run["status"], run["message"]) == ("failed", "the training process ended without finishing")
    assert log.start_training("Ben", pid=os.getpid()) is not None, "a dead run never blocks the next"
    assert log.start_training("Cy", pid=os.getpid()) is None, "one run at a time"


def test_citebot_train_with_nothing_labelled_says_so(settings: Settings, engine: Engine) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "citebot"), "train"], env=cli_env(settings), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "no labelled questions yet" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.model
@pytest.mark.timeout(900)
def test_feedback_import_then_train_end_to_end(tmp_path: Path) -> None:
    """A community brings its cases (`citebot feedback import`), then `citebot train` retrains on them with the real
    model, prints before/after figures and the guard sets, and records the run for the console."""
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    env = cli_env(settings)
    root = Path(__file__).resolve().parent.parent
    ingest = subprocess.run(
        [str(VENV_BIN / "citebot"), "ingest", str(root / "corpus")], env=env, capture_output=True, text=True
    )
    assert ingest.returncode == 0, ingest.stderr
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        "".join(
            json.dumps({"q": q, "unanswerable": True} if e is None else {"q": q, "evidence": [e]}) + "\n"
            for q, e in SEED_LABELS
        )
        + json.dumps({"q": "what colour is the sky on mars", "evidence": ["no sentence says this"]})
        + "\n",
        encoding="utf-8",
    )
    imported = subprocess.run(
        [str(VENV_BIN / "citebot"), "feedback", "import", str(cases), "--by", "Ana"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 1, imported.stderr  # one case's evidence is nowhere: said, the rest imported
    assert "unanswerable questions" in imported.stdout
    assert imported.stderr.strip().splitlines() == [
        "citebot: no sentence of the corpus holds the evidence of: what colour is the sky on mars"
    ]
    trained = subprocess.run([str(VENV_BIN / "citebot"), "train"], env=env, capture_output=True, text=True, timeout=800)
    assert trained.returncode == 0, trained.stderr
    assert "fold 1 of 4" in trained.stderr, "progress while it trains"
    assert re.search(r"first quote\W+\d\.\d{3}\W+\d\.\d{3}", trained.stdout), trained.stdout
    assert "seed" in trained.stdout and ("published answer model" in trained.stdout or "keeping" in trained.stdout)
    log = QuestionLog.for_settings(settings)
    (run,) = log.training_runs()
    assert run["status"] in ("published", "kept") and run["outcome"]["labelled"] == len(SEED_LABELS)
    log.close()
