"""Learning a community's questions: what operators label, and how `citebot train` turns it into better answers.

Where the labels come from (all in the question log, `bot.question_log`):
- the console: on a question's page, the operator marks the sentences that answer it, or says nothing in the corpus
  does; each label names its sentence by document and offsets (and keeps the quote and source as they were);
- `citebot feedback import FILE.jsonl`: `citebot eval` lines (a question and the evidence that answers it, or
  `"unanswerable": true`); each question is asked once to find the sentences its evidence names;
- Discord votes: a 👍 confirms the first quote of the answer voted on, a 👎 says the first quote does not answer
  (used when no operator labelled the question).
A label on a document that changed since (the index no longer holds it) is *stale*: kept and shown, never trained
on.

`citebot train` asks every labelled question once (features as answering computes them), puts a quarter of them
aside (by a hash of the question, so the same ones each time), trains both answer models on the training data
shipped with citebot (`model/training.npz`, written by `python -m bench train`) plus the other three quarters
(weighted so that a few dozen labels count), and compares the new models with those in use on the questions put
aside: the first quote, evidence shown, answered confidently and the precision of those answers, and unanswerable
questions kept from a confident answer; and, as a guard, the first quote on the shipped question sets. The new
models are published to the index (`bot.answering.models`), where every running engine switches to them, unless
they do worse on the questions put aside; then the model in use stays, and `train` says so.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.answering.scorer import CONFIDENCE_FILE, META_FILE, MODEL_DIR, RANKER_FILE, SentenceScorer
from bot.answering.sentences import FEATURES
from bot.answering.training import Group, Trained, train
from bot.evaluation import Case
from bot.question_log import Label, QuestionLog, question_key

if TYPE_CHECKING:
    from bot.engine import Engine

SHIPPED_DATA = MODEL_DIR / "training.npz"
# How much one labelled question counts against one of the shipped data, for the confidence model and the ranker.
LABEL_WEIGHT = 40.0
LABEL_RANKER_WEIGHT = 40.0
# The share of labelled questions put aside to judge the new models (never trained on).
ASIDE_SHARE = 0.25
# Wrong confident answers on the questions put aside, beyond those of the model in use, that still count as no
# worse: one (the figures are whole counts; the half absorbs rounding).
WRONG_TOLERANCE = 1.5
# Sentences shown by an answer (evidence "shown": among these).
SHOWN = 3

Progress = Callable[[str], None]
Span = tuple[str, int, int]  # (doc_id, start, end)


@dataclass
class Taught:
    """One question as the labels and votes teach it."""

    question: str
    answers: list[Span] = field(default_factory=list)  # sentences that answer it
    rejected: list[Span] = field(default_factory=list)  # first quotes voted down
    unanswerable: bool = False

    @property
    def aside(self) -> bool:
        """Put aside to judge a training run (the same questions every time)."""
        digest = hashlib.sha256(question_key(self.question).encode("utf-8")).hexdigest()
        return int(digest[:8], 16) / 0xFFFFFFFF < ASIDE_SHARE


def taught_questions(log: QuestionLog, present: Callable[[str], bool]) -> tuple[list[Taught], list[Label]]:
    """The labelled (and voted) questions, and the stale labels (on documents `present` says are gone)."""
    by_key: dict[str, Taught] = {}
    stale: list[Label] = []
    for label in log.labels():
        taught = by_key.setdefault(label.key, Taught(label.question))
        if label.verdict == "unanswerable":
            taught.unanswerable = True
        elif label.doc_id is not None and label.start is not None and label.end is not None:
            if present(label.doc_id):
                taught.answers.append((label.doc_id, label.start, label.end))
            else:
                stale.append(label)
    for stored in log.voted():
        key = question_key(stored.question)
        first = stored.citations[0] if stored.citations else None
        if key in by_key or first is None or stored.verdict is None or not present(str(first.get("doc_id", ""))):
            continue  # an operator's label says more than a vote
        span = (str(first["doc_id"]), int(first["start"]), int(first["end"]))
        taught = by_key.setdefault(key, Taught(stored.question))
        (taught.answers if stored.verdict == "up" else taught.rejected).append(span)
    kept = [taught for taught in by_key.values() if taught.answers or taught.rejected or taught.unanswerable]
    return kept, stale


def label_groups(engine: Engine, taught: Sequence[Taught], progress: Progress) -> list[tuple[Taught, Group]]:
    """Each labelled question asked once, its candidates labelled: a candidate answers when it overlaps a sentence
    an operator marked (or a confirmed first quote)."""
    found = []
    last = time.monotonic()
    for number, item in enumerate(taught, start=1):
        if time.monotonic() - last > 2 or number == len(taught):
            progress(f"asking the labelled questions: {number}/{len(taught)}")
            last = time.monotonic()
        retrieval = engine.retrieve_alone(item.question)
        candidates, _ = engine.extractive.candidates(retrieval)
        if not candidates:
            continue
        labels = np.asarray(
            [
                not item.unanswerable
                and any(_overlaps(c.hit.chunk.doc_id, c.start, c.end, span) for span in item.answers)
                for c in candidates
            ],
            dtype=np.float32,
        )
        group = Group(
            "labels",
            retrieval.question.search_text,
            np.stack([c.features for c in candidates]),
            labels,
            answerable=not item.unanswerable,
            weight=LABEL_WEIGHT,
            ranker_weight=LABEL_RANKER_WEIGHT,
        )
        found.append((item, group))
    return found


def _overlaps(doc_id: str, start: int, end: int, span: Span) -> bool:
    return doc_id == span[0] and start < span[2] and span[1] < end


# -- the training data shipped with citebot --------------------------------------------------------------------
# Features are kept at 8 bits per value, scaled per feature: LightGBM bins each feature into at most 255 values
# anyway, so nothing it could learn from is lost, and the file stays small.


def save_shipped(groups: Sequence[Group], path: Path = SHIPPED_DATA) -> None:
    features = np.concatenate([g.features for g in groups]).astype(np.float32)
    low, high = features.min(axis=0), features.max(axis=0)
    scale = np.where(high > low, (high - low) / 255.0, 1.0).astype(np.float32)
    quantized = np.round((features - low) / scale).astype(np.uint8)
    np.savez_compressed(
        path,
        features=quantized,
        low=low.astype(np.float32),
        scale=scale,
        labels=np.concatenate([g.labels for g in groups]).astype(np.uint8),
        sizes=np.asarray([len(g.labels) for g in groups], dtype=np.int32),
        answerable=np.asarray([g.answerable for g in groups], dtype=np.uint8),
        weights=np.asarray([[g.weight, g.ranker_weight] for g in groups], dtype=np.float32),
        meta=np.asarray(
            json.dumps({"features": list(FEATURES), "groups": [[g.source, g.question, g.fold_key] for g in groups]})
        ),
    )


def load_shipped(path: Path = SHIPPED_DATA) -> list[Group]:
    """The shipped training data, as `bench train` saved it (features back to float32, as answering computes)."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        if tuple(meta["features"]) != FEATURES:
            raise ValueError(f"{path} holds other features than this citebot computes")
        features = data["features"].astype(np.float32) * data["scale"] + data["low"]
        labels = data["labels"].astype(np.float32)
        bounds = np.concatenate([[0], np.cumsum(data["sizes"])])
        groups = []
        for index, (source, question, fold_key) in enumerate(meta["groups"]):
            begin, end = int(bounds[index]), int(bounds[index + 1])
            weight, ranker_weight = (float(value) for value in data["weights"][index])
            groups.append(
                Group(
                    source,
                    question,
                    features[begin:end],
                    labels[begin:end],
                    bool(data["answerable"][index]),
                    weight,
                    ranker_weight,
                    fold_key,
                )
            )
    return groups


# -- judging a model ---------------------------------------------------------------------------------------------


# `judge`'s figures that are shares (the others, "questions" and "answerable", are counts), in the order shown.
SHARES = ("first_quote", "evidence_shown", "answered", "answered_precision", "unanswerable_not_answered")


def judge(scorer: SentenceScorer, groups: Sequence[Group]) -> dict[str, float]:
    """How a model does on groups: the first quote right (answerable), evidence among the sentences shown, answered
    confidently and the precision of those answers, and unanswerable questions kept from a confident answer."""
    level = scorer.thresholds.answer
    first = shown = answered = right = kept = 0
    answerable = [g for g in groups if g.answerable]
    unanswerable = [g for g in groups if not g.answerable]
    for group in groups:
        scores = scorer.rank(group.features)
        order = np.argsort(-scores, kind="stable")
        confidence = scorer.confidence(group.features, scores)
        if group.answerable:
            hit = bool(group.labels[order[0]])
            first += hit
            shown += bool(group.labels[order[:SHOWN]].any())
            answered += confidence >= level
            right += confidence >= level and hit
        else:
            kept += confidence < level
    return {
        "questions": float(len(groups)),
        "answerable": float(len(answerable)),
        "first_quote": first / max(1, len(answerable)),
        "evidence_shown": shown / max(1, len(answerable)),
        "answered": answered / max(1, len(answerable)),
        "answered_precision": right / max(1, answered),
        "unanswerable_not_answered": kept / max(1, len(unanswerable)),
    }


def no_worse(new: dict[str, float], old: dict[str, float]) -> bool:
    """The new model keeps the first quote at least as good, and gives at most `WRONG_TOLERANCE` more wrong confident
    answers (a confident answer whose first quote is wrong, or to a question nothing answers): on the few dozen
    questions put aside, one answer either way is chance, not a trend."""
    return new["first_quote"] >= old["first_quote"] and wrong_confident(new) <= wrong_confident(old) + WRONG_TOLERANCE


def wrong_confident(figures: dict[str, float]) -> float:
    """How many confident answers were wrong, from `judge`'s figures."""
    answerable, unanswerable = figures["answerable"], figures["questions"] - figures["answerable"]
    answered = figures["answered"] * answerable
    return answered * (1 - figures["answered_precision"]) + unanswerable * (1 - figures["unanswerable_not_answered"])


@dataclass
class Outcome:
    """What a training run did: its figures, and the version it published (None when it kept the model in use)."""

    labelled: int
    aside: int
    stale: int
    before: dict[str, float]
    after: dict[str, float]
    guard: dict[str, dict[str, float]]
    version: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "labelled": self.labelled,
            "aside": self.aside,
            "stale": self.stale,
            "before": self.before,
            "after": self.after,
            "guard": self.guard,
            "version": self.version,
            "message": self.message,
        }


def retrain(engine: Engine, log: QuestionLog, progress: Progress = lambda line: None) -> Outcome:
    """`citebot train` (see the module docstring)."""
    engine.corpus.refresh(fresh=True)
    taught, stale = taught_questions(log, lambda doc_id: bool(engine.corpus.documents([doc_id])))
    if not taught:
        return Outcome(0, 0, len(stale), {}, {}, {}, None, "no labelled questions yet: nothing to learn from")
    asked = label_groups(engine, taught, progress)
    held = [group for item, group in asked if item.aside]
    learn = [group for item, group in asked if not item.aside]
    progress("reading the training data shipped with citebot")
    shipped = load_shipped()
    progress(f"training on {len(shipped)} shipped questions and {len(learn)} labelled ones")
    trained = train([*shipped, *learn], progress=lambda line: progress(f"training: {line}"))
    current = engine.extractive.scorer
    with tempfile.TemporaryDirectory(prefix="citebot-train-") as scratch:
        folder = Path(scratch)
        version = _version(trained, learn)
        trained.save(folder, {"version": version, "labels": len(learn)})
        candidate = SentenceScorer(folder)
        before, after = judge(current, held), judge(candidate, held)
        guard = {}
        for source in ("seed", "casual", "news"):
            picked = [g for g in shipped if g.source == source]
            if picked:
                guard[source] = {
                    "before": judge(current, picked)["first_quote"],
                    "after": judge(candidate, picked)["first_quote"],
                }
        if held and not no_worse(after, before):
            message = (
                f"the new model does worse on the {len(held)} labelled questions put aside (first quote "
                f"{after['first_quote']:.2f} against {before['first_quote']:.2f}, wrong confident answers "
                f"{wrong_confident(after):.0f} against {wrong_confident(before):.0f}): keeping the model in use"
            )
            return Outcome(len(taught), len(held), len(stale), before, after, guard, None, message)
        outcome = Outcome(len(taught), len(held), len(stale), before, after, guard, version, "")
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        meta["judged"] = outcome.to_json()
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        files = {name: (folder / name).read_bytes() for name in (RANKER_FILE, CONFIDENCE_FILE, META_FILE)}
        engine.store.put_answer_model(version, files)
    outcome.message = f"published answer model {version}: every engine answering from this index switches to it"
    if not held:
        outcome.message += (
            " (no labelled question was put aside to judge it: about one in four is, once there are more)"
        )
    return outcome


def _version(trained: Trained, learn: Sequence[Group]) -> str:
    """A name for the trained models: the time, and a hash of what they learned from."""
    digest = hashlib.sha256()
    for group in learn:
        digest.update(group.question.encode("utf-8"))
        digest.update(group.labels.tobytes())
    digest.update(json.dumps(trained.thresholds, sort_keys=True).encode())
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{digest.hexdigest()[:8]}"


# -- labels brought from elsewhere --------------------------------------------------------------------------------


@dataclass
class Imported:
    """What `citebot feedback import` did: labels added, and the questions whose evidence no sentence holds."""

    answers: int = 0
    unanswerable: int = 0
    not_found: list[str] = field(default_factory=list)


def import_labels(engine: Engine, log: QuestionLog, cases: Sequence[Case], labelled_by: str) -> Imported:
    """Label each case: `unanswerable`, or the sentences that hold its evidence (found by asking the question once,
    then, if none of its candidates holds the evidence, among the passages the evidence's own words find)."""
    imported = Imported()
    engine.corpus.refresh(fresh=True)
    for case in cases:
        if case.unanswerable:
            log.add_label(case.question, "unanswerable", labelled_by, origin="import")
            imported.unanswerable += 1
            continue
        sentences = _sentences_holding(engine, case.question, case.evidence)
        for evidence in case.evidence:
            if not sentences:
                sentences = _sentences_holding(engine, evidence, case.evidence)
        if not sentences:
            imported.not_found.append(case.question)
            continue
        for doc_id, start, end, quote, source in sentences:
            log.add_label(
                case.question,
                "answers",
                labelled_by,
                doc_id=doc_id,
                start=start,
                end=end,
                quote=quote,
                source=source,
                origin="import",
            )
            imported.answers += 1
    return imported


def _sentences_holding(engine: Engine, query: str, evidence: Sequence[str]) -> list[tuple[str, int, int, str, str]]:
    """(doc_id, start, end, quote, source) of the quotable sentences that `query` retrieves and that hold one of the
    `evidence` strings."""
    candidates, _ = engine.extractive.candidates(engine.retrieve_alone(query, 10))
    return [
        (c.hit.chunk.doc_id, c.start, c.end, c.quote, c.hit.source)
        for c in candidates
        if any(text and text in c.quote for text in evidence)
    ]
