"""Time in questions: "latest", "most recent", "now", "this week", "since May", "in May 2025", "on 4 June".

`time_frame(question, now)` reads a question's time expression into a `TimeFrame`; `narrow(hits, frame, k, now)`
applies it to retrieved passages through their documents' publication dates:
- a period restricts the passages to documents published inside it, when any is (otherwise nothing changes, and
  the date shown with each citation tells the reader what they are looking at);
- "latest", "most recent", "now", "currently" keep the passages of the newest document among the relevant ones,
  so "what is the latest figure?" quotes the newest report rather than an older one that says it as well.
A month or day named without a year ("in May") means the latest such period, up to now, that the retrieved
documents were published in. Documents without a date never win by a time expression, and passages from a corpus
without dates pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.dates import MONTH_PATTERN, month_number, parse_date
from bot.keyword import terms
from bot.types import Question, ScoredChunk

# A passage counts as relevant for "latest" when its fused score is at least this share of the best one's.
LATEST_RELEVANCE = 0.8
# How many passages (times k) a time expression chooses from.
POOL_FACTOR = 4

_RECENT = re.compile(
    r"\b(latest|most recent(?:ly)?|newest|most up[- ]to[- ]date|current(?:ly)?|now|nowadays|at present|presently|"
    r"so far|to date|as things stand|these days)\b",
    re.I,
)
_PREPOSITION = r"(?P<prep>since|after|from|before|until|till|by|in|during|on|of|for|over)\s+(?:the\s+)?"
_TERM = (
    r"(?P<iso_day>\d{4}-\d{2}-\d{2})"
    r"|(?P<iso_month>\d{4}-\d{2})(?![-\d])"
    rf"|(?P<dmy_day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<dmy_month>{MONTH_PATTERN})(?:,?\s+(?P<dmy_year>\d{{4}}))?"
    rf"|(?P<mdy_month>{MONTH_PATTERN})\s+(?P<mdy_day>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<mdy_year>\d{{4}}))?"
    rf"|(?P<my_month>{MONTH_PATTERN})\s+(?P<my_year>\d{{4}})"
    r"|(?P<today>today|yesterday)"
    r"|(?P<period_mod>this|last|past|previous)\s+(?P<period>week|month|year)"
    r"|(?:last|past)\s+(?P<count>\d{1,3})\s+(?P<unit>day|week|month|year)s?"
)
# A bare month or year is a date only after a preposition: "in May", "since 2024" (not "May said", "2024 jobs").
_BARE = rf"(?P<bare_month>{MONTH_PATTERN})(?![\w-])|(?P<bare_year>(?:19|20)\d{{2}})(?![\w-])"
_EXPRESSION = re.compile(rf"\b(?:{_PREPOSITION})?(?:{_TERM}|(?(prep)(?:{_BARE})|(?!)))\b", re.I)
_BARE_START = re.compile(rf"^\s*(?:{_TERM}|{_BARE})", re.I)  # a period named at the start, without preposition
_BETWEEN = re.compile(
    r"\b(?:between|from)\s+(?P<first>.+?)\s+(?:and|to|until|till)\s+(?P<second>.+?)(?:[?.!,]|$)", re.I
)


@dataclass(frozen=True)
class TimeFrame:
    """What a question asks about time: a period [start, end) of publication, and/or the newest documents."""

    start: datetime | None = None
    end: datetime | None = None
    latest: bool = False
    yearless: bool = False  # the period was named without a year; `narrow` picks the year from the documents
    phrase: str = ""  # the words that said it ("latest in May")

    @property
    def bounded(self) -> bool:
        return self.start is not None or self.end is not None

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (self.end is None or moment < self.end)

    def shifted(self, years: int) -> TimeFrame:
        start = _add_years(self.start, years) if self.start is not None else None
        end = _add_years(self.end, years) if self.end is not None else None
        return replace(self, start=start, end=end)


def time_frame(question: str, now: datetime) -> TimeFrame | None:
    """The question's time expression, or None when it names no time (most questions)."""
    recent = _RECENT.search(question)
    period = _between(question, now) or _first_period(question, now)
    if period is None:
        return TimeFrame(latest=True, phrase=recent.group(0)) if recent else None
    if recent is None:
        return period
    return replace(period, latest=True, phrase=f"{recent.group(0)} {period.phrase}")


def time_terms(frame: TimeFrame | None) -> set[str]:
    """The analyzed terms of the time expression: the dates answer for them, so no passage has to contain them."""
    return set(terms(frame.phrase)) if frame is not None else set()


def without_time_terms(question: Question, now: datetime) -> Question:
    """The question with the words of its time expression ("latest", "in May") left out of the terms a quote must
    cover; "what was reported in May?" is answered by a May report, which need not say "May"."""
    drop = time_terms(time_frame(question.search_text, now))
    if not drop:
        return question
    return replace(
        question,
        terms=tuple(term for term in question.terms if term not in drop),
        context_terms=tuple(term for term in question.context_terms if term not in drop),
    )


def period(text: str, now: datetime) -> TimeFrame | None:
    """The period a date names on its own: `2025-05-01` (a day), `2025-05` or `May 2025` (a month), `2025`."""
    return _first_period(text.strip(), now, bare=True)


def published_between(published: str | None, start: datetime | None, end: datetime | None) -> bool:
    """Whether a document's publication date lies in [start, end); without bounds every document does."""
    if start is None and end is None:
        return True
    moment = parse_date(published)
    return moment is not None and TimeFrame(start, end).contains(moment)


def narrow(hits: Sequence[ScoredChunk], frame: TimeFrame, k: int, now: datetime) -> list[ScoredChunk]:
    """The best `k` of `hits` (best first) under the time frame; see the module docstring for the rules."""
    dated: list[tuple[ScoredChunk, datetime | None]] = [(hit, parse_date(hit.published)) for hit in hits]
    known = [moment for _, moment in dated if moment is not None]
    if not known:
        return list(hits[:k])
    if frame.bounded:
        window = resolve(frame, known, now)
        inside: list[tuple[ScoredChunk, datetime | None]] = [
            (hit, moment) for hit, moment in dated if moment is not None and window.contains(moment)
        ]
        if inside:
            dated = inside
    if frame.latest and dated:
        best = dated[0][0].score
        relevant = [
            (hit, moment) for hit, moment in dated if moment is not None and hit.score >= LATEST_RELEVANCE * best
        ]
        if relevant:
            newest = max(moment for _, moment in relevant)
            documents = {hit.chunk.doc_id for hit, moment in relevant if moment == newest}
            dated = [(hit, moment) for hit, moment in dated if hit.chunk.doc_id in documents]
    return [hit for hit, _ in dated[:k]]


def resolve(frame: TimeFrame, known: list[datetime], now: datetime) -> TimeFrame:
    """The frame with its year settled: a period named without one ("in May") is the latest such period, up to
    now, that holds one of the `known` publication dates (else the latest one that has begun)."""
    if not frame.yearless:
        return frame
    base = (frame.start or frame.end or now).year
    years = sorted({moment.year for moment in known} | {now.year}, reverse=True)
    fallback: TimeFrame | None = None
    for year in years:
        candidate = frame.shifted(year - base)
        began = candidate.start if candidate.start is not None else candidate.end
        if began is not None and began > now:
            continue
        fallback = fallback or candidate
        if any(candidate.contains(moment) for moment in known):
            return candidate
    return fallback or frame


def _between(question: str, now: datetime) -> TimeFrame | None:
    match = _BETWEEN.search(question)
    if match is None:
        return None
    first = _first_period(match.group("first"), now, bare=True)
    second = _first_period(match.group("second"), now, bare=True)
    if first is None or second is None or first.start is None or second.start is None or second.end is None:
        return None
    start, end = first.start, second.end
    # "from May to July 2025": a side named without a year takes the other side's.
    if first.yearless and not second.yearless:
        start = _add_years(start, second.start.year - start.year)
        if start >= end:
            start = _add_years(start, -1)
    elif second.yearless and not first.yearless:
        end = _add_years(end, start.year - second.start.year)
        if end <= start:
            end = _add_years(end, 1)
    return TimeFrame(start, end, yearless=first.yearless and second.yearless, phrase=match.group(0))


def _first_period(text: str, now: datetime, bare: bool = False) -> TimeFrame | None:
    pattern = _EXPRESSION if not bare else _BARE_START
    for match in pattern.finditer(text):
        span = _span(match, now)
        if span is None:
            continue
        first, last, yearless = span
        start: datetime | None = first
        end: datetime | None = last
        preposition = (match.groupdict().get("prep") or "").lower()
        if preposition in ("since", "from"):
            end = None
        elif preposition == "after":
            start, end = last, None
        elif preposition == "before":
            start, end = None, first
        elif preposition in ("until", "till", "by"):
            start = None
        return TimeFrame(start, end, yearless=yearless, phrase=match.group(0))
    return None


Span = tuple[datetime, datetime, bool]  # [start, end) and whether it was named without a year


def _span(match: re.Match[str], now: datetime) -> Span | None:
    """The period the matched term names."""
    groups = {name: value for name, value in match.groupdict().items() if value}
    try:
        return _calendar_span(groups, now) or _relative_span(groups, now)
    except ValueError:  # "31 February"
        return None


def _calendar_span(groups: dict[str, str], now: datetime) -> Span | None:
    if "iso_day" in groups:
        day = datetime.strptime(groups["iso_day"], "%Y-%m-%d").replace(tzinfo=UTC)
        return day, day + timedelta(days=1), False
    if "iso_month" in groups:
        year_number, month_value = (int(part) for part in groups["iso_month"].split("-"))
        return (*_month(year_number, month_value), False)
    for prefix in ("dmy", "mdy"):
        if f"{prefix}_day" in groups:
            day_month = month_number(groups[f"{prefix}_month"])
            if day_month is None:
                return None
            year_text = groups.get(f"{prefix}_year")
            day = datetime(int(year_text or now.year), day_month, int(groups[f"{prefix}_day"]), tzinfo=UTC)
            return day, day + timedelta(days=1), year_text is None
    named = month_number(groups.get("my_month") or groups.get("bare_month") or "")
    if named is not None and "my_month" in groups:
        return (*_month(int(groups["my_year"]), named), False)
    if named is not None:
        return (*_month(now.year, named), True)
    if "bare_year" in groups:
        year = int(groups["bare_year"])
        return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC), False
    return None


def _relative_span(groups: dict[str, str], now: datetime) -> Span | None:
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if "today" in groups:
        day = today - timedelta(days=1 if groups["today"].lower() == "yesterday" else 0)
        return day, day + timedelta(days=1), False
    if "period" in groups:
        modifier, period = groups["period_mod"].lower(), groups["period"].lower()
        if modifier == "past":  # "the past week": the last seven days up to now
            length = {"week": timedelta(days=7), "month": timedelta(days=30), "year": timedelta(days=365)}[period]
            return now - length, now + timedelta(seconds=1), False
        step = 0 if modifier == "this" else -1
        if period == "week":
            monday = today - timedelta(days=today.weekday()) + timedelta(weeks=step)
            return monday, monday + timedelta(weeks=1), False
        if period == "month":
            year, month = divmod(now.year * 12 + now.month - 1 + step, 12)
            return (*_month(year, month + 1), False)
        return datetime(now.year + step, 1, 1, tzinfo=UTC), datetime(now.year + step + 1, 1, 1, tzinfo=UTC), False
    if "count" in groups:
        days = {"day": 1, "week": 7, "month": 30, "year": 365}[groups["unit"].lower()] * int(groups["count"])
        return now - timedelta(days=days), now + timedelta(seconds=1), False
    return None


def _month(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February in a year without one
        return moment.replace(year=moment.year + years, day=28)
