"""Answerers turn retrieved passages into an `Answer`. The extractive one needs no model; the LLM one is optional.

Both receive a `Retrieval` (the prepared question, the passages, and the keyword index and corpus they came from) and
return an `Answer` whose citations quote the documents verbatim (see `bot.answering.citations`).
"""

from __future__ import annotations

from typing import Protocol

from bot.retrieval import Retrieval
from bot.types import Answer


class Answerer(Protocol):
    def answer(self, retrieval: Retrieval) -> Answer: ...
