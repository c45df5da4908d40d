"""Answers that quote documents of different dates read oldest to newest.

A story told by several reports changes over time: "£2.1bn" in May, "£2.8bn" in June. Quoted in date order, with
[1] the oldest, the reader sees how it developed and which figure is the latest. `in_date_order` is a step after
answering, for every answerer:
- when each sentence of the answer is a verbatim quote with its marker (the extractive answerer's answers), the
  sentences are reordered by their documents' publication dates;
- otherwise (prose written by an LLM, whose sentences lean on each other) the text stays as written and only the
  citations are renumbered, so the list of sources reads oldest to newest.
Citations are then numbered in the order the text first refers to them. Undated documents come after dated ones;
an answer with fewer than two distinct dates, or that does not answer (`support` other than `answered`), is
returned unchanged.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

from bot.dates import parse_date
from bot.types import Answer, Citation

_SPACED_MARKERS = re.compile(r" ?(?:\[\d+\])+")
_MARKER = re.compile(r"\[(\d+)\]")
_UNDATED = datetime.max.replace(tzinfo=UTC)
# A quoted sentence as the answerers compose it: the quote, its markers, then its closing punctuation.
_PIECE = re.compile(r".*?(?:\[\d+\])+[.!?]?(?=\s|$)", re.DOTALL)


def in_date_order(answer: Answer) -> Answer:
    """The answer with its quotes (or, failing that, its citations) ordered oldest to newest."""
    if answer.support != "answered":
        return answer
    dates = {citation.n: parse_date(citation.published) for citation in answer.citations}
    if len({moment for moment in dates.values() if moment is not None}) < 2:
        return answer
    by_number = {citation.n: citation for citation in answer.citations}
    pieces = _quoted_sentences(answer.text, by_number)
    if pieces is not None:
        pieces.sort(key=lambda piece: _when(piece[1], dates))
        text = " ".join(piece for piece, _ in pieces)
        order = _first_mentions(text)
    else:
        text = answer.text
        order = sorted(by_number, key=lambda n: (_when([n], dates), n))
    numbers = {old: new for new, old in enumerate(order, start=1)}
    if text == answer.text and all(old == new for old, new in numbers.items()):
        return answer
    text = _MARKER.sub(lambda match: f"[{numbers[int(match.group(1))]}]", text)
    citations = tuple(sorted((replace(c, n=numbers[c.n]) for c in answer.citations), key=lambda c: c.n))
    return replace(answer, text=text, citations=citations)


def _quoted_sentences(text: str, citations: dict[int, Citation]) -> list[tuple[str, list[int]]] | None:
    """The answer as (sentence, its citation numbers), when every sentence is one citation's quote; else None."""
    pieces: list[tuple[str, list[int]]] = []
    end = 0
    for match in _PIECE.finditer(text):
        piece = match.group(0).strip()
        numbers = [int(n) for n in _MARKER.findall(piece)]
        quote = _SPACED_MARKERS.sub("", piece).strip()  # undoes `with_markers`: "a summit [1]." -> "a summit."
        if not numbers or any(n not in citations for n in numbers):
            return None
        if not any(quote == citations[n].quote.strip() for n in numbers):
            return None
        pieces.append((piece, numbers))
        end = match.end()
    if not pieces or text[end:].strip():
        return None
    return pieces


def _when(numbers: list[int], dates: dict[int, datetime | None]) -> datetime:
    """Sort key: the earliest date among the citations, undated last."""
    known = [moment for n in numbers if (moment := dates.get(n)) is not None]
    return min(known) if known else _UNDATED


def _first_mentions(text: str) -> list[int]:
    seen: list[int] = []
    for match in _MARKER.finditer(text):
        n = int(match.group(1))
        if n not in seen:
            seen.append(n)
    return seen
