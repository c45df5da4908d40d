"""Answerers turn retrieved passages into an `Answer`. The extractive one needs no model; the LLM one is optional.

Both receive a `Question` (the question, the terms that matter, the conversation so far) and the passages, and
return an `Answer` whose citations quote the documents verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bot.keyword import KeywordIndex
from bot.types import Answer, ScoredChunk, Turn


@dataclass(frozen=True)
class Question:
    """A question prepared for answering: `search_text` folds in the previous turn for elliptical follow-ups."""

    text: str
    search_text: str
    terms: tuple[str, ...]
    context_terms: tuple[str, ...] = ()
    history: tuple[Turn, ...] = field(default=())
    vector: np.ndarray | None = field(default=None, compare=False)  # the embedded search text, once retrieved


class Answerer(Protocol):
    def answer(self, question: Question, hits: list[ScoredChunk], keyword: KeywordIndex) -> Answer: ...
