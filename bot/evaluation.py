"""`citebot eval`: score the engine on questions with known evidence, and on questions the corpus cannot answer.

A case is one JSONL line: `{"q": ..., "evidence": [...], "answer_any": [...]}` or `{"q": ..., "unanswerable": true}`,
optionally with `"history": [{"q": ...}]` for follow-ups and a free-form `"kind"`.
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


@dataclass(frozen=True)
class Miss:
    question: str
    kind: str
    got: str


@dataclass
class EvaluationReport:
    answerable: int = 0
    unanswerable: int = 0
    evidence_hits: int = 0
    answer_hits: int = 0
    abstained_unanswerable: int = 0
    false_abstentions: int = 0
    reciprocal_ranks: list[float] = field(default_factory=list)
    recall_hits: int = 0
    k: int = 5
    latencies_ms: list[float] = field(default_factory=list)
    misses: list[Miss] = field(default_factory=list)

    def metrics(self) -> dict[str, float | int]:
        def share(part: int, whole: int) -> float:
            return part / whole if whole else 0.0

        latencies = sorted(self.latencies_ms) or [0.0]
        return {
            "evidence_hit_rate": share(self.evidence_hits, self.answerable),
            "answer_hit_rate": share(self.answer_hits, self.answerable),
            "abstention_on_unanswerable": share(self.abstained_unanswerable, self.unanswerable),
            "false_abstention": share(self.false_abstentions, self.answerable),
            f"recall@{self.k}": share(self.recall_hits, self.answerable),
            "mrr": statistics.fmean(self.reciprocal_ranks) if self.reciprocal_ranks else 0.0,
            "latency_p50_ms": _percentile(latencies, 50),
            "latency_p95_ms": _percentile(latencies, 95),
            "questions": self.answerable + self.unanswerable,
        }

    def to_json(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {name: round(value, 4) for name, value in self.metrics().items()}
        metrics["misses"] = [{"q": miss.question, "kind": miss.kind, "got": miss.got} for miss in self.misses]
        return metrics


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
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a valid case ({type(exc).__name__}: {exc})") from None
    return cases


def run_evaluation(engine: Engine, cases: Sequence[Case], k: int | None = None) -> EvaluationReport:
    report = EvaluationReport(k=k or engine.settings.top_k)
    for case in cases:
        answer: Answer = engine.ask(case.question, history=case.history, k=k)
        report.latencies_ms.append(answer.timings_ms.get("total", 0.0))
        if case.unanswerable:
            report.unanswerable += 1
            if answer.abstained:
                report.abstained_unanswerable += 1
            else:
                report.misses.append(Miss(case.question, case.kind or "unanswerable", answer.text))
            continue
        report.answerable += 1
        quotes = [citation.quote for citation in answer.citations]
        evidence_hit = not answer.abstained and any(e in quote for e in case.evidence for quote in quotes)
        said = " ".join([answer.text, *quotes]).lower()
        answer_hit = not answer.abstained and any(expected.lower() in said for expected in case.answer_any)
        report.evidence_hits += evidence_hit
        report.answer_hits += answer_hit
        report.false_abstentions += answer.abstained
        rank = next(
            (
                position
                for position, hit in enumerate(answer.retrieved, start=1)
                if any(e in hit.chunk.text for e in case.evidence)
            ),
            None,
        )
        report.recall_hits += rank is not None
        report.reciprocal_ranks.append(1.0 / rank if rank else 0.0)
        if not (evidence_hit and answer_hit):
            report.misses.append(Miss(case.question, case.kind or "answerable", answer.text))
    return report
