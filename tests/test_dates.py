"""Dates: reading what sources write, showing dates, relative phrases in articles, time in questions, and the
date steps after answering (bot/dates.py, bot/timeframe.py, bot/chronology.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.chronology import closest_in_time, in_date_order
from bot.dates import format_day, normalize, parse_date, relative_dates
from bot.keyword import KeywordIndex
from bot.retrieval import Retrieval
from bot.timeframe import narrow, period, published_between, time_frame, without_time_terms
from bot.types import Answer, Chunk, Citation, Question, ScoredChunk
from ingest.loaders import front_matter_date, load

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # a Friday


def day(text: str) -> datetime:
    moment = parse_date(text)
    assert moment is not None
    return moment


# -- reading and showing dates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2025-06-04", "2025-06-04"),
        ("2025-06-04T09:30:00Z", "2025-06-04T09:30:00+00:00"),
        ("2025-06-04T11:30:00+02:00", "2025-06-04T09:30:00+00:00"),
        ("Wed, 04 Jun 2025 09:30:00 GMT", "2025-06-04T09:30:00+00:00"),
        ("4 June 2025", "2025-06-04"),
        ("June 4, 2025", "2025-06-04"),
        ("Wednesday 4th June 2025", "2025-06-04"),
        ('"2025-06-04"', "2025-06-04"),
        ("sometime soon", None),
        ("2025-02-30", None),
        ("", None),
    ],
)
def test_dates_as_sources_write_them(text: str, stored: str | None) -> None:
    assert normalize(text) == stored


def test_format_day_cannot_be_misread() -> None:
    assert format_day("2025-06-04T23:30:00+00:00") == "4 June 2025"
    assert format_day(None) == "" and format_day("not a date") == "not a date"


def test_front_matter_date_in_text_files(tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text("---\ntitle: A note\ndate: 14 May 2025\n---\n# A note\n\nBody text here.\n", encoding="utf-8")
    document = load(note)
    assert (document.title, document.published) == ("A note", "2025-05-14")
    assert front_matter_date("---\npublished: 2025-05-14T08:00:00Z\n---\nx") == "2025-05-14T08:00:00+00:00"
    assert front_matter_date("date: 2025-05-14\n\nno front matter") is None
    plain = tmp_path / "plain.txt"
    plain.write_text("Plain text without a date.\n", encoding="utf-8")
    assert load(plain).published is None


def test_html_files_take_the_date_from_their_meta_tags(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        '<html><head><meta property="article:published_time" content="2025-06-04T09:30:00Z"></head>'
        "<body><p>Some article text.</p></body></html>",
        encoding="utf-8",
    )
    assert load(page).published == "2025-06-04T09:30:00+00:00"
    page.write_text('<html><body><time datetime="2025-06-04">4 June</time><p>Text.</p></body></html>')
    assert load(page).published == "2025-06-04"


# -- relative phrases in articles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "published", "expected"),
    [
        ("The council said on Monday that costs had risen.", "2025-06-04", ["on Monday = 2 June 2025"]),
        ("The council will meet on Friday.", "2025-06-04", ["on Friday = 6 June 2025"]),
        (
            "It will open this year, the mayor said on Monday.",
            "2025-06-04",
            ["this year = 2025", "on Monday = 2 June 2025"],
        ),
        ("It happened last Wednesday.", "2025-06-04", ["last Wednesday = 28 May 2025"]),
        ("A meeting will be held this week.", "2025-06-04", ["this week = 2–8 June 2025"]),
        ("Prices fell last month.", "2025-06-04", ["last month = May 2025"]),
        ("The plan was first shown last May.", "2025-06-04", ["last May = May 2025"]),
        ("The plan was first shown last June.", "2025-06-04", ["last June = June 2024"]),
        ("Work starts next year.", "2025-06-04", ["next year = 2026"]),
        ("The mayor spoke yesterday.", "2025-06-04T09:30:00+00:00", ["yesterday = 3 June 2025"]),
        ("Costs may rise in May 2026.", "2025-06-04", []),  # an absolute date, and "may" the verb
        ("The council said on Monday that costs had risen.", None, []),  # no date: nothing to resolve
        # The sentence gives the full date: no note, and never one that contradicts it.
        ("The next community meetup is on Thursday 3 December 2026.", "2026-11-20", []),
        ("The offer runs until March 2027.", "2026-11-20", []),
        ("Talks resume on Friday, May 16.", "2025-05-12", []),
        ("Fares stay frozen until Mar. 2027.", "2026-11-20", []),
    ],
)
def test_relative_dates_read_against_the_article_date(sentence: str, published: str | None, expected: list[str]):
    found = relative_dates(sentence, published)
    assert [str(date) for date in found] == expected
    for date in found:
        assert sentence[date.start : date.end] == date.phrase


# -- time in questions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "start", "end", "latest"),
    [
        ("What is the latest figure?", None, None, True),
        ("What is the most recent estimate?", None, None, True),
        ("Who leads the council now?", None, None, True),
        ("What happened this week?", "2026-11-23", "2026-11-30", False),
        ("What changed last week?", "2026-11-16", "2026-11-23", False),
        ("What was reported today?", "2026-11-27", "2026-11-28", False),
        ("What was reported in May 2025?", "2025-05-01", "2025-06-01", False),
        ("What was said on 4 June 2025?", "2025-06-04", "2025-06-05", False),
        ("What was said on 2025-06-04?", "2025-06-04", "2025-06-05", False),
        ("What has happened since June 2025?", "2025-06-01", None, False),
        ("What was known before June 2025?", None, "2025-06-01", False),
        ("What happened between May and July 2025?", "2025-05-01", "2025-08-01", False),
        ("What happened in 2024?", "2024-01-01", "2025-01-01", False),
        ("What is the latest news this month?", "2026-11-01", "2026-12-01", True),
    ],
)
def test_time_in_questions(question: str, start: str | None, end: str | None, latest: bool) -> None:
    frame = time_frame(question, NOW)
    assert frame is not None
    assert (frame.start, frame.end, frame.latest) == (
        day(start) if start else None,
        day(end) if end else None,
        latest,
    )


@pytest.mark.parametrize(
    "question", ["Why Seoul?", "What did May say about Brexit?", "How many of the 2,000 jobs are left?", "Who is he?"]
)
def test_questions_without_time(question: str) -> None:
    assert time_frame(question, NOW) is None


def test_a_month_without_a_year_is_read_against_the_documents() -> None:
    frame = time_frame("What was reported in May?", NOW)
    assert frame is not None and frame.yearless
    may, june = hit("may", "2025-05-14"), hit("june", "2025-06-04")
    assert narrow([june, may], frame, 5, NOW) == [may], "May 2025: the latest May that has documents"


def test_period_and_published_between_for_the_sources_command() -> None:
    for text, start, end in [
        ("2025-05", "2025-05-01", "2025-06-01"),
        ("May 2025", "2025-05-01", "2025-06-01"),
        ("1 May 2025", "2025-05-01", "2025-05-02"),
        ("2025", "2025-01-01", "2026-01-01"),
    ]:
        named = period(text, NOW)
        assert named is not None and (named.start, named.end) == (day(start), day(end)), text
    assert period("soon", NOW) is None
    assert published_between("2025-05-14", day("2025-05-01"), day("2025-06-01"))
    assert not published_between("2025-06-14", day("2025-05-01"), day("2025-06-01"))
    assert not published_between(None, day("2025-05-01"), None) and published_between(None, None, None)


# -- narrowing retrieved passages ----------------------------------------------------------------------------


def hit(doc: str, published: str | None, score: float = 1.0, position: int = 0) -> ScoredChunk:
    chunk = Chunk(f"{doc}:{position}", doc, f"text of {doc}", doc.title(), 0, 10, position=position)
    return ScoredChunk(chunk, score, 0.5, f"{doc}.md", published=published)


def test_a_period_keeps_the_passages_published_in_it() -> None:
    hits = [hit("sept", "2025-09-10"), hit("may", "2025-05-14", 0.9), hit("undated", None, 0.8)]
    frame = time_frame("what was said in May 2025?", NOW)
    assert frame is not None
    assert narrow(hits, frame, 5, NOW) == [hits[1]]
    nothing_then = time_frame("what was said in March 2025?", NOW)
    assert nothing_then is not None and narrow(hits, nothing_then, 2, NOW) == hits[:2], "no document then: unchanged"


def test_latest_keeps_the_newest_of_the_relevant_documents() -> None:
    hits = [hit("may", "2025-05-14"), hit("sept", "2025-09-10", 0.9), hit("june", "2025-06-04", 0.85)]
    frame = time_frame("what is the latest figure?", NOW)
    assert frame is not None
    assert narrow(hits, frame, 5, NOW) == [hits[1]]
    # A newer document that is far less relevant does not win.
    hits = [hit("may", "2025-05-14"), hit("other", "2025-11-01", 0.3)]
    assert narrow(hits, frame, 5, NOW) == [hits[0]]


def test_a_corpus_without_dates_is_left_alone() -> None:
    hits = [hit("a", None), hit("b", None, 0.5)]
    for question in ("what is the latest?", "what happened in May 2025?"):
        frame = time_frame(question, NOW)
        assert frame is not None and narrow(hits, frame, 1, NOW) == hits[:1]


def test_time_words_are_not_terms_a_quote_must_cover() -> None:
    question = Question("what was reported in May?", "what was reported in May?", ("report", "may"))
    assert without_time_terms(question, NOW).terms == ("report",)
    plain = Question("why Seoul?", "why Seoul?", ("seoul",))
    assert without_time_terms(plain, NOW) is plain


# -- after answering -----------------------------------------------------------------------------------------


def cite(n: int, quote: str, published: str | None, doc: str) -> Citation:
    return Citation(n, f"{doc}.md", doc, 0, len(quote), quote, 0.5, doc_id=doc, published=published)


def test_quotes_from_different_dates_are_put_oldest_first() -> None:
    answer = Answer(
        "how much will the bridge cost?",
        "The latest figure is £3.4bn [1]. It has risen to £2.8bn [2]. The first estimate was £2.1bn [3].",
        (
            cite(1, "The latest figure is £3.4bn.", "2025-09-10", "sept"),
            cite(2, "It has risen to £2.8bn.", "2025-06-04", "june"),
            cite(3, "The first estimate was £2.1bn.", "2025-05-14", "may"),
        ),
        "answered",
    )
    ordered = in_date_order(answer)
    assert (
        ordered.text
        == "The first estimate was £2.1bn [1]. It has risen to £2.8bn [2]. The latest figure is £3.4bn [3]."
    )
    assert [(c.n, c.doc_id) for c in ordered.citations] == [(1, "may"), (2, "june"), (3, "sept")]
    for citation in ordered.citations:
        assert citation.quote[:-1] in ordered.text


def test_prose_keeps_its_order_and_only_the_sources_are_renumbered() -> None:
    answer = Answer(
        "q",
        "Costs rose to £3.4bn by September [1], from £2.1bn in May [2].",
        (cite(1, "The latest figure is £3.4bn.", "2025-09-10", "sept"), cite(2, "It was £2.1bn.", "2025-05-14", "may")),
        "answered",
    )
    ordered = in_date_order(answer)
    assert ordered.text == "Costs rose to £3.4bn by September [2], from £2.1bn in May [1]."
    assert [c.doc_id for c in ordered.citations] == ["may", "sept"]


def test_answers_that_need_no_reordering_are_unchanged() -> None:
    one_date = Answer(
        "q", "A [1]. B [2].", (cite(1, "A.", "2025-05-14", "a"), cite(2, "B.", "2025-05-14", "b")), "answered"
    )
    assert in_date_order(one_date) is one_date
    undated = Answer("q", "A [1]. B [2].", (cite(1, "A.", None, "a"), cite(2, "B.", None, "b")), "answered")
    assert in_date_order(undated) is undated
    declined = Answer("q", "The corpus doesn't say.", (), "none")
    assert in_date_order(declined) is declined


def retrieval(question: str, hits: list[ScoredChunk]) -> Retrieval:
    return Retrieval(Question(question, question, ()), tuple(hits), KeywordIndex.from_texts([]).view())


def test_a_declined_date_question_offers_the_passages_of_that_time() -> None:
    declined = Answer("what was reported in May 2025?", "The corpus doesn't say.", (), "none")
    may = hit("may", "2025-05-14")
    offered = closest_in_time(declined, retrieval(declined.question, [may]), NOW)
    assert offered.support == "closest" and offered.abstained
    assert [c.doc_id for c in offered.citations] == ["may"] and "14 May 2025" in offered.text
    # Not narrowed to that time (a passage from June is among them), or no time asked: still declined.
    assert closest_in_time(declined, retrieval(declined.question, [may, hit("june", "2025-06-04")]), NOW) is declined
    plain = Answer("why?", "The corpus doesn't say.", (), "none")
    assert closest_in_time(plain, retrieval("why?", [may]), NOW) is plain
