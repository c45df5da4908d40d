"""The date steps after answering: dated passages for date questions, and answers that read oldest to newest.

`with_dates(answer, retrieval)` is what the engine calls; it applies both steps below.

A question about a time ("what was reported in May?", "what is the latest figure?") names little besides the
time, so the answerer may find no passage close enough in meaning and decline. When the retrieval was narrowed
to documents of that time, `closest_in_time` then offers their passages as the closest ones (support `closest`),
so the reader still sees what was published then, with its date.

A story told by several reports changes over time: "£2.1bn" in May, "£2.8bn" in June. Quoted in date order, with
[1] the oldest, the reader sees how it developed and which figure is the latest. `in_date_order` is a step after
answering, for every answerer:
- when each sentence of the answer is a verbatim quote with its marker (the extractive answerer's answers), the
  sentences are reordered by their documents' publication dates;
- otherwise (prose written by an LLM, whose sentences lean on each other) the text stays as written and only the
  citations are renumbered, so the list of sources reads oldest to newest.
The citations are then numbered: reordered quotes in the order the text now refers to them, an LLM's by date.
Undated documents come after dated ones; an answer with fewer than two distinct dates, or that does not answer
(`support` other than `answered`), is returned unchanged.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

from bot.answering.citations import citation
from bot.dates import format_day, parse_date
from bot.retrieval import Retrieval
from bot.timeframe import resolve, time_frame
from bot.types import NO_ANSWER, Answer, Citation

CLOSEST_PASSAGES = 2

_SPACED_MARKERS = re.compile(r" ?(?:\[\d+\])+")
_MARKER = re.compile(r"\[(\d+)\]")
_UNDATED = datetime.max.replace(tzinfo=UTC)
# A quoted sentence as the answerers compose it: the quote, its markers, then its closing punctuation.
_PIECE = re.compile(r".*?(?:\[\d+\])+[.!?]?(?=\s|$)", re.DOTALL)


def with_dates(answer: Answer, retrieval: Retrieval, now: datetime | None = None) -> Answer:
    return in_date_order(closest_in_time(answer, retrieval, now or datetime.now(UTC)))


def closest_in_time(answer: Answer, retrieval: Retrieval, now: datetime) -> Answer:
    """A declined answer to a date question becomes the closest passages published in the time it asks about."""
    if answer.support != "none" or answer.citations or not retrieval.hits:
        return answer
    frame = time_frame(retrieval.question.search_text, now)
    dates = [parse_date(hit.published) for hit in retrieval.hits]
    known = [moment for moment in dates if moment is not None]
    if frame is None or len(known) != len(dates):
        return answer  # no time asked, or the passages were not narrowed to dated documents
    if frame.bounded:
        window = resolve(frame, known, now)
        if not all(window.contains(moment) for moment in known):
            return answer
    if not frame.bounded and len({hit.chunk.doc_id for hit in retrieval.hits}) != 1:
        return answer  # "latest" narrows to the newest document; anything else was not narrowed
    hits = list(retrieval.hits[:CLOSEST_PASSAGES])
    citations = tuple(citation(n, hit, hit.chunk.start, hit.chunk.end, hit.chunk.text) for n, hit in enumerate(hits, 1))
    first, last = min(known[: len(hits)]), max(known[: len(hits)])
    when = (
        f"on {format_day(first)}"
        if first.date() == last.date()
        else f"between {format_day(first)} and {format_day(last)}"
    )
    markers = " and ".join(f"[{c.n}]" for c in citations)
    text = f"{NO_ANSWER[:-1]} exactly. The closest passages, published {when}, are {markers}."
    return replace(answer, text=text, citations=citations, support="closest")


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
