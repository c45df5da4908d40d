"""`citebot eval`: score the engine on questions with known evidence, and on questions the corpus cannot answer.

A case is one JSONL line: `{"q": ..., "evidence": [...], "answer_any": [...]}` or `{"q": ..., "unanswerable": true}`,
optionally with `"history": [{"q": ...}]` for follow-ups, a free-form `"kind"`, and `"doc"`: the end of the source
path of the document the question is about (`"business/002.txt"`), for the share of questions whose first passage
comes from it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError
from bot.types import Answer, Turn

if TYPE_CHECKING:
    from bot.engine import Engine


@dataclass(frozen=True)
class Case:
    question: str
    evidence: tuple[str, ...] = ()
    answer_any: tuple[str, ...] = ()
    unanswerable: bool = False
    history: tuple[Turn, ...] = ()
    kind: str = ""
    doc: str = ""


@dataclass(frozen=True)
class Miss:
    question: str
    kind: str
    got: str


@dataclass
class EvaluationReport:
    """Counts over a question file. Evidence counts when it is *shown*: quoted by an `answered` answer or as the
    closest passage of a `closest` one; `confidence` is scored against "the first quote holds evidence"."""

    answerable: int = 0
    unanswerable: int = 0
    evidence_first: int = 0
    evidence_any: int = 0
    answer_hits: int = 0
    answered: int = 0  # answerable questions answered confidently
    answered_right: int = 0  # ... whose first quote holds evidence
    closest: int = 0  # answerable questions given the closest passage
    declined: int = 0  # answerable questions with support "none"
    unanswerable_answered: int = 0  # confident answers to questions the corpus cannot answer
    reciprocal_ranks: list[float] = field(default_factory=list)
    recall_hits: int = 0
    with_document: int = 0  # answerable cases that name their document
    document_first: int = 0  # ... whose first passage comes from it
    k: int = 5
    latencies_ms: list[float] = field(default_factory=list)
    confidences: list[tuple[float, bool]] = field(default_factory=list)  # (confidence, first quote holds evidence)
    misses: list[Miss] = field(default_factory=list)

    def metrics(self) -> dict[str, float | int]:
        def share(part: int, whole: int) -> float:
            return part / whole if whole else 0.0

        latencies = sorted(self.latencies_ms) or [0.0]
        return {
            "evidence_first_quote": share(self.evidence_first, self.answerable),
            "evidence_anywhere": share(self.evidence_any, self.answerable),
            "answer_hit_rate": share(self.answer_hits, self.answerable),
            "answered_rate": share(self.answered, self.answerable),
            "answered_precision": share(self.answered_right, self.answered),
            "closest_rate": share(self.closest, self.answerable),
            "declined_answerable": share(self.declined, self.answerable),
            "unanswerable_not_answered": share(self.unanswerable - self.unanswerable_answered, self.unanswerable),
            "unanswerable_answered": share(self.unanswerable_answered, self.unanswerable),
            "confidence_ece": expected_calibration_error(self.confidences),
            f"recall@{self.k}": share(self.recall_hits, self.answerable),
            "document_first": share(self.document_first, self.with_document),
            "mrr": statistics.fmean(self.reciprocal_ranks) if self.reciprocal_ranks else 0.0,
            "latency_p50_ms": _percentile(latencies, 50),
            "latency_p95_ms": _percentile(latencies, 95),
            "questions": self.answerable + self.unanswerable,
        }

    def to_json(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {name: round(value, 4) for name, value in self.metrics().items()}
        metrics["misses"] = [{"q": miss.question, "kind": miss.kind, "got": miss.got} for miss in self.misses]
        return metrics


def expected_calibration_error(scored: Sequence[tuple[float, bool]], bins: int = 10) -> float:
    """The mean gap between stated confidence and observed accuracy, over ten equal-width bins."""
    if not scored:
        return 0.0
    total = 0.0
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        inside = [(p, hit) for p, hit in scored if low <= p < high or (index == bins - 1 and p == 1.0)]
        if inside:
            mean = statistics.fmean(p for p, _ in inside)
            accuracy = statistics.fmean(float(hit) for _, hit in inside)
            total += len(inside) * abs(mean - accuracy)
    return total / len(scored)


def _percentile(ordered: list[float], percent: float) -> float:
    index = min(len(ordered) - 1, max(0, round(percent / 100 * (len(ordered) - 1))))
    return ordered[index]


def load_cases(path: Path) -> list[Case]:
    if not path.is_file():
        raise ConfigError(f"no such evaluation file: {path}; pass a JSONL file of questions")
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            cases.append(
                Case(
                    question=str(raw["q"]),
                    evidence=tuple(raw.get("evidence", ())),
                    answer_any=tuple(raw.get("answer_any", ())),
                    unanswerable=bool(raw.get("unanswerable", False)),
                    history=tuple(Turn(str(turn["q"]), str(turn.get("a", ""))) for turn in raw.get("history", ())),
                    kind=str(raw.get("kind", "")),
                    doc=str(raw.get("doc", "")),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a valid case ({type(exc).__name__}: {exc})") from None
    return cases


def run_evaluation(engine: Engine, cases: Sequence[Case], k: int | None = None) -> EvaluationReport:
    report = EvaluationReport(k=engine.settings.top_k)  # recall counts the passages retrieved
    for case in cases:
        answer: Answer = engine.ask(case.question, history=replay(engine, case.history, k), k=k)
        report.latencies_ms.append(answer.timings_ms.get("total", 0.0))
        quotes = [citation.quote for citation in answer.citations] if answer.support != "none" else []
        first = bool(quotes) and any(e in quotes[0] for e in case.evidence)
        if case.unanswerable:
            report.unanswerable += 1
            report.confidences.append((answer.confidence, False))
            if not answer.abstained:
                report.unanswerable_answered += 1
                report.misses.append(Miss(case.question, case.kind or "unanswerable", answer.text))
            continue
        report.answerable += 1
        report.confidences.append((answer.confidence, first))
        report.answered += answer.support == "answered"
        report.answered_right += answer.support == "answered" and first
        report.closest += answer.support == "closest"
        report.declined += answer.support == "none"
        evidence_any = any(e in quote for e in case.evidence for quote in quotes)
        said = " ".join([answer.text, *quotes]).lower() if quotes else ""
        answer_hit = any(expected.lower() in said for expected in case.answer_any)
        report.evidence_first += first
        report.evidence_any += evidence_any
        report.answer_hits += answer_hit
        rank = next(
            (
                position
                for position, hit in enumerate(answer.retrieved[: report.k], start=1)
                if any(e in hit.chunk.text for e in case.evidence)
            ),
            None,
        )
        report.recall_hits += rank is not None
        if case.doc:
            report.with_document += 1
            report.document_first += bool(answer.retrieved) and _names(answer.retrieved[0].source, case.doc)
        report.reciprocal_ranks.append(1.0 / rank if rank else 0.0)
        if not first or answer.support != "answered":
            report.misses.append(Miss(case.question, f"{case.kind or 'answerable'}, {answer.support}", answer.text))
    return report


def _names(source: str, doc: str) -> bool:
    """Whether the source path ends with the document a case names ("business/002.txt")."""
    return source.replace("\\", "/").endswith("/" + doc.lstrip("/")) or source == doc


def replay(engine: Engine, history: Sequence[Turn], k: int | None) -> tuple[Turn, ...]:
    """The conversation as the engine would have had it: each earlier question asked in turn (a case's history
    holds questions; their answers, and what they quoted, come from the engine)."""
    turns: list[Turn] = []
    for turn in history:
        if turn.answer:
            turns.append(turn)
        else:
            turns.append(engine.ask(turn.question, history=tuple(turns), k=k).turn())
    return tuple(turns)
