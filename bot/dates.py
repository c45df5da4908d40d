"""Dates as citebot reads and shows them: publication dates of documents, and relative phrases in articles.

Documents carry `published` as ISO 8601 text: a day (`2025-06-04`) when only the day is known, a UTC time
(`2025-06-04T09:30:00+00:00`) when the feed or page gave one. `parse_date` reads what sources write (ISO 8601,
RFC 822 as in RSS, "4 June 2025", "June 4, 2025"); `format_day` shows a date to people without ambiguity.

News is written relative to its own date: "on Monday", "last May", "this week". `relative_dates` finds such phrases
in a quote and says which dates they mean when the article's date is known, so a reader sees "Monday = 2 June
2025" next to the verbatim quote; the quote itself is never rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_MONTH_NUMBERS = {name.lower(): number for number, name in enumerate(MONTHS, start=1)}
_MONTH_NUMBERS.update({name[:3].lower(): number for number, name in enumerate(MONTHS, start=1)})
_MONTH_NUMBERS["sept"] = 9
MONTH_PATTERN = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
    r"(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?)"
)

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?$", re.I
)
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY_MONTH_YEAR = re.compile(rf"^(?:\w+,?\s+)?(\d{{1,2}})(?:st|nd|rd|th)?\s+({MONTH_PATTERN}),?\s+(\d{{4}})$", re.I)
_MONTH_DAY_YEAR = re.compile(rf"^(?:\w+,?\s+)?({MONTH_PATTERN})\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})$", re.I)


def month_number(name: str) -> int | None:
    """1-12 for a month name or its abbreviation ("Sept." included), else None."""
    return _MONTH_NUMBERS.get(name.lower().rstrip("."))


def parse_date(text: str | None) -> datetime | None:
    """A date or time as sources write it, as an aware UTC datetime (a bare day is its midnight); None if unreadable.

    Reads ISO 8601 (`2025-06-04`, `2025-06-04T09:30:00Z`, with an offset), RFC 822 (`Wed, 04 Jun 2025 09:30:00
    GMT`, as in RSS) and written days (`4 June 2025`, `June 4, 2025`, `Wednesday 4th June 2025`).
    """
    if not text:
        return None
    value = " ".join(str(text).split()).strip("\"'")
    match = _ISO.match(value)
    if match:
        year, month, day, hour, minute, second, zone = match.groups()
        try:
            moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
        except ValueError:
            return None
        if zone and zone.upper() != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return moment.replace(tzinfo=UTC)
    for pattern, order in ((_DAY_MONTH_YEAR, "dmy"), (_MONTH_DAY_YEAR, "mdy")):
        match = pattern.match(value)
        if match:
            first, second, year = match.groups()
            day, month = (first, second) if order == "dmy" else (second, first)
            number = month_number(month)
            try:
                return datetime(int(year), number or 0, int(day), tzinfo=UTC)
            except ValueError:
                return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def normalize(text: str | None) -> str | None:
    """The ISO 8601 form citebot stores: `YYYY-MM-DD` for a bare day, else the UTC time to the second."""
    moment = parse_date(text)
    if moment is None:
        return None
    if _is_bare_day(str(text)):
        return moment.date().isoformat()
    return moment.isoformat(timespec="seconds")


def _is_bare_day(text: str) -> bool:
    value = " ".join(text.split()).strip("\"'")
    return bool(_DAY_MONTH_YEAR.match(value) or _MONTH_DAY_YEAR.match(value) or _ISO_DAY.match(value))


def from_timestamp(moment: datetime) -> str:
    """A datetime (naive ones are taken as UTC) in the stored form."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def format_moment(value: str | None) -> str:
    """An ISO timestamp as `2025-06-01 12:34 UTC` (times are shown in UTC, the time the logs keep); anything that
    is not one as it is."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def format_day(value: str | date | datetime | None) -> str:
    """`4 June 2025`: day, month name and year, which no reader can take for another date; "" when unknown."""
    if value is None:
        return ""
    if isinstance(value, str):
        parsed = parse_date(value)
        if parsed is None:
            return value
        value = parsed
    day = value.date() if isinstance(value, datetime) else value
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- relative phrases in articles --------------------------------------------------------------------------


@dataclass(frozen=True)
class RelativeDate:
    """A phrase of a text (at `start:end`) that names a date relative to the text's own date, and what it means."""

    phrase: str
    start: int
    end: int
    meaning: str  # e.g. "2 June 2025", "2–8 June 2025", "May 2024"

    def __str__(self) -> str:
        return f"{self.phrase} = {self.meaning}"


_WEEKDAY_PATTERN = "|".join(WEEKDAYS)
_RELATIVE = re.compile(
    rf"\b(?:(?P<wd_mod>last|this|next|on|earlier on|late on)\s+)?(?P<weekday>{_WEEKDAY_PATTERN})\b"
    r"|\b(?P<day_word>yesterday|today|tomorrow|this morning|this afternoon|this evening|tonight|last night)\b"
    r"|\b(?:earlier\s+)?(?P<period_mod>this|last|next|earlier this)\s+(?P<period>week|month|year)\b"
    rf"|\b(?P<month_mod>last|next|this|in|since|until|by|from)\s+(?P<month>{MONTH_PATTERN})(?!\w)(?!\s*\d)",
    re.I,
)
# A weekday or month followed by the full date is no relative phrase: "on Thursday 3 December 2026",
# "on Friday, May 16", "until March 2027".
_FULL_DATE_AFTER = re.compile(
    rf"\.?,?\s*(?:the\s+)?(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTH_PATTERN}|{MONTH_PATTERN}\s+\d{{1,2}}\b|\d{{4}}\b)",
    re.I,
)
# Words that put a clause in the future: "will meet on Friday" is the coming Friday, not the last one.
_FUTURE = re.compile(
    r"\b(will|shall|is due|are due|is expected|are expected|plans? to|is set to|are set to|'ll)\b", re.I
)


def relative_dates(text: str, published: str | None) -> list[RelativeDate]:
    """The relative date phrases of `text`, resolved against the article's publication date (none when unknown)."""
    moment = parse_date(published)
    if moment is None:
        return []
    base = moment.date()
    found: list[RelativeDate] = []
    for match in _RELATIVE.finditer(text):
        if _FULL_DATE_AFTER.match(text, match.end()):
            continue  # the sentence gives the date itself
        # The tense of the phrase's own clause: "will be held this week, the organisers said on Monday".
        clause = re.split(r"[,;:.!?]", text[: match.start()])[-1]
        meaning = _resolve(match, base, future=bool(_FUTURE.search(clause)))
        if meaning is not None:
            phrase = match.group(0)
            found.append(RelativeDate(phrase, match.start(), match.end(), meaning))
    return found


def _resolve(match: re.Match[str], base: date, future: bool) -> str | None:
    if match.group("weekday"):
        modifier = (match.group("wd_mod") or "").lower()
        if match.group("weekday")[0].islower():
            return None  # "monday" in running text is rarely the weekday; names are capitalised
        target = WEEKDAYS.index(match.group("weekday").capitalize())
        if modifier == "next" or (future and modifier in ("", "on")):
            delta = (target - base.weekday()) % 7 or 7
        elif modifier == "this":
            delta = target - base.weekday()
        else:
            delta = -((base.weekday() - target) % 7)
            if modifier == "last" and delta == 0:
                delta = -7
        return format_day(base + timedelta(days=delta))
    if match.group("day_word"):
        word = match.group("day_word").lower()
        offset = {"yesterday": -1, "tomorrow": 1, "last night": -1}.get(word, 0)
        return format_day(base + timedelta(days=offset))
    if match.group("period"):
        modifier = match.group("period_mod").lower().replace("earlier ", "")
        step = {"this": 0, "last": -1, "next": 1}[modifier]
        period = match.group("period").lower()
        if period == "week":
            monday = base - timedelta(days=base.weekday()) + timedelta(weeks=step)
            return _span(monday, monday + timedelta(days=6))
        if period == "month":
            year, month = divmod(base.year * 12 + base.month - 1 + step, 12)
            return f"{MONTHS[month]} {year}"
        return str(base.year + step)
    if match.group("month"):
        modifier = match.group("month_mod").lower()
        number = month_number(match.group("month"))
        if number is None or match.group("month")[:3] == "may":
            return None  # lower-case "may" is the verb
        month = number
        if modifier == "next" or (future and modifier in ("in", "by", "until")):
            year = base.year if month > base.month else base.year + 1
        elif modifier == "this":
            year = base.year
        else:
            year = base.year if month < base.month or (month == base.month and modifier != "last") else base.year - 1
        return f"{MONTHS[month - 1]} {year}"
    return None


def _span(first: date, last: date) -> str:
    if first.year != last.year:
        return f"{format_day(first)} – {format_day(last)}"
    if first.month != last.month:
        return f"{first.day} {MONTHS[first.month - 1]} – {format_day(last)}"
    return f"{first.day}–{format_day(last)}"
