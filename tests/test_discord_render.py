"""Unit tests of bot/discord_app/render.py: whatever the answer, the message fits Discord's limits.

Why: a message over a limit is refused by Discord (400 / 50035), so the user would get nothing at all; the
fake's `validate_message_body` is the same checker the end-to-end tests run against.
"""

from __future__ import annotations

import discord
import pytest

from bot.discord_app.render import (
    ABSTAIN_TITLE,
    CLOSEST_COLOUR,
    CLOSEST_NOTE,
    ELLIPSIS,
    EMBED_TOTAL_LIMIT,
    citation_field,
    embed_answer,
    embed_length,
    embed_question,
    question_from_mention,
    render_answer,
    render_error,
    render_help,
    render_sources,
    shorten,
    thread_name,
)
from bot.types import Answer, Citation, DocumentRecord
from tests.fake_discord import validate_message_body


def citation(
    n: int, quote: str = "a quote", title: str = "Title", source: str = "corpus/doc.txt", **kw: object
) -> Citation:
    return Citation(n=n, source=source, title=title, start=10, end=10 + len(quote), quote=quote, score=0.5, **kw)  # type: ignore[arg-type]


def body(embeds: list[discord.Embed], content: str | None = None) -> dict[str, object]:
    data: dict[str, object] = {"embeds": [embed.to_dict() for embed in embeds]}
    if content is not None:
        data["content"] = content
    return data


def test_shorten() -> None:
    assert shorten("short", 10) == "short"
    assert shorten("x" * 11, 10) == "x" * 9 + ELLIPSIS and len(shorten("x" * 11, 10)) == 10
    assert shorten("abc", 0) == ""


def test_ordinary_answer_layout() -> None:
    answer = Answer(
        "why Seoul?",
        "Because Seoul works as neutral staging ground [1].",
        (citation(1, "Seoul works as neutral staging ground", page=3),),
        "answered",
        confidence=0.834,
        note="extractive answer",
    )
    embed = render_answer(answer)
    assert embed.title == "why Seoul?" and embed.description == answer.text
    assert embed.colour != discord.Colour.orange()
    [field] = embed.fields
    assert field.name == "[1] Title"
    assert field.value == "> Seoul works as neutral staging ground\n`corpus/doc.txt` · chars 10–47 (page 3)"
    assert embed.footer.text == "extractive answer · confidence 83%"
    assert embed.author.name is None
    assert validate_message_body(body([embed])) is None


def test_the_three_support_tiers_look_different_and_keep_their_question() -> None:
    quote = (citation(1, "Mars has two moons"),)
    closest = render_answer(
        Answer("what is the GDP of Mars?", "The closest passage is Mars has two moons [1].", quote, "closest", 0.31)
    )
    assert closest.title == "what is the GDP of Mars?" and closest.colour == CLOSEST_COLOUR
    assert closest.footer.text == f"{CLOSEST_NOTE} · confidence 31%"
    missing = render_answer(
        Answer("what is the GDP of *Mars*?", "The corpus doesn't say (no figures on Mars's economy).", (), "none", 0.04)
    )
    assert missing.title == ABSTAIN_TITLE and missing.colour == discord.Colour.orange()
    assert missing.description == "No figures on Mars's economy." and missing.footer.text is None  # no confidence
    bare = render_answer(Answer("why?", "The corpus doesn't say.", (), "none"))
    assert bare.description == "Nothing in the indexed documents answers it."
    answered = render_answer(Answer("why Seoul?", "Because [1].", quote, "answered", 0.9))
    colours = {answered.colour, closest.colour, missing.colour}
    assert len(colours) == 3, "each tier has its own colour"
    # The question can be read back from any tier's embed, as typed (for follow-ups rebuilt after a restart).
    assert [embed_question(e) for e in (answered, closest, missing)] == [
        "why Seoul?",
        "what is the GDP of Mars?",
        "what is the GDP of *Mars*?",
    ]
    assert embed_answer(closest) == "The closest passage is Mars has two moons [1]."


@pytest.mark.parametrize("citations", [0, 3, 25, 26, 60])
@pytest.mark.parametrize("size", [10, 5000])
def test_any_answer_fits_every_limit(citations: int, size: int) -> None:
    answer = Answer(
        question="q" * size,
        text="answer " * size,
        citations=tuple(
            citation(n, "quote\n" * size, title="t" * size, source="s" * size, page=n) for n in range(1, citations + 1)
        ),
        support="answered",
        note="n" * size,
    )
    embed = render_answer(answer)
    assert validate_message_body(body([embed])) is None
    assert embed_length(embed) <= EMBED_TOTAL_LIMIT and len(embed.fields) <= 25
    if citations:
        shown = [f for f in embed.fields if f.name != "More citations"]
        hidden = citations - len(shown)
        assert shown and (hidden == 0 or embed.fields[-1].value == f"+{hidden} more not shown")


def test_markdown_and_mentions_are_neutralised() -> None:
    quote = "**bold** @everyone <@123456789012345678> `code` > quoted"
    embed = render_answer(
        Answer("@here ping?", "@everyone said *so* [1]", (citation(1, quote, title="_t_ @here"),), "answered")
    )
    text = "\n".join(
        [embed.title or "", embed.description or "", embed.fields[0].name or "", embed.fields[0].value or ""]
    )
    assert "@everyone" not in text and "@here" not in text and "<@123456789012345678>" not in text
    assert "\\*\\*bold\\*\\*" in text and "\\_t\\_" in text


def test_long_quote_keeps_its_location_line() -> None:
    name, value = citation_field(citation(7, "word " * 1000, source="corpus/long.txt"))
    assert name == "[7] Title" and len(value) <= 1024
    assert value.endswith("`corpus/long.txt` · chars 10–5010") and ELLIPSIS in value


def test_thread_name_and_mentions() -> None:
    assert question_from_mention("<@123456789012345678>  why   Seoul? <@!456>") == "why Seoul?"
    assert thread_name("<@1> " + "x" * 300) == "x" * 99 + ELLIPSIS
    assert thread_name("<@1>") == "Question"


def test_sources_fit_and_say_what_is_left_out() -> None:
    docs = [DocumentRecord(f"id{i}", (f"corpus/doc-{i}.txt",), f"Document {i} " * 5, i, "now") for i in range(500)]
    embeds = render_sources(docs)
    assert 1 <= len(embeds) <= 10 and validate_message_body(body(embeds)) is None
    assert sum(embed_length(e) for e in embeds) <= EMBED_TOTAL_LIMIT
    assert "more not shown" in (embeds[-1].footer.text or "")
    assert "corpus/doc-0.txt" in (embeds[0].description or "")
    assert render_sources([])[0].description is not None


def test_help_and_error() -> None:
    assert validate_message_body(body([render_help()])) is None
    assert len(render_error("x" * 5000)) == 2000
    assert render_error("@everyone broke") != "@everyone broke"
