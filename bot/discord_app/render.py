"""Answer -> Discord message parts, as pure functions (no I/O, no client), so limits are unit-testable.

Why here and not in bot/render.py: only this package may import discord. Every function returns text and embeds
that fit Discord's documented limits; over-long parts are shortened with an ellipsis, never rejected, because a
refused message means the user gets nothing. All text that comes from the corpus, the question or the engine is
markdown-escaped and mention-neutralised; sending with `AllowedMentions.none()` is the second line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import discord

from bot.dates import format_day, relative_dates
from bot.links import text_fragment_link
from bot.types import NO_ANSWER, Answer, Citation, DocumentRecord

CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FIELD_COUNT_LIMIT = 25
FOOTER_LIMIT = 2048
EMBED_TOTAL_LIMIT = 6000
EMBEDS_PER_MESSAGE = 10
THREAD_NAME_LIMIT = 100

ELLIPSIS = "…"
# Every message is sent with this: answers quote the corpus and members' words, and must never ping anyone.
NO_MENTIONS = discord.AllowedMentions.none()
ANSWER_COLOUR = discord.Colour.blurple()
CLOSEST_COLOUR = discord.Colour.gold()
ABSTAIN_COLOUR = discord.Colour.orange()
ABSTAIN_TITLE = NO_ANSWER[:-1]
CLOSEST_NOTE = "Closest passage, not a direct answer"
# A short answer text keeps the embed useful even when citations eat most of the 6000-character budget.
_MIN_DESCRIPTION = 1000
_MENTION = re.compile(r"<@[!&]?\d+>")
_ESCAPED = re.compile(r"\\([\\*_`~|>#\-\[\]()<:])")
_MISSING = re.compile(rf"^{re.escape(ABSTAIN_TITLE)} \((.+)\)\.?$", re.DOTALL)  # "... (it doesn't mention X)."
# A citation links to its web page only while the link leaves most of the field for the quote.
_MAX_LINK = 500


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in an ellipsis when anything was cut."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1].rstrip() + ELLIPSIS


def clean(text: str) -> str:
    """Neutralise markdown and mentions in untrusted text (corpus quotes, titles, questions)."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def unclean(text: str) -> str:
    """`clean` undone, as far as it can be: what a user typed, read back from an embed the bot rendered."""
    return _ESCAPED.sub(r"\1", text.replace("\u200b", ""))


def _blockquote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.strip().splitlines()) or ">"


def citation_location(citation: Citation) -> str:
    """Where the quote is: the source path (a link to the passage for web pages), the character span, the page
    and the publication date, for checking it by hand, and the link to the passage in the console when there is
    one; then what relative dates in the quote mean."""
    source = citation.source.replace("`", "'")
    where = f"`{shorten(source, 300)}`"
    if citation.url:
        link = text_fragment_link(citation.url, citation.quote)
        link = link if len(link) <= _MAX_LINK else citation.url
        if len(link) <= _MAX_LINK:
            where = _markdown_link(source, link, 120)
    where += f" · chars {citation.start}–{citation.end}"
    if citation.page is not None:
        where += f" (page {citation.page})"
    if citation.published:
        where += f" · {format_day(citation.published)}"
    if citation.link:
        where += f" · [read in context]({citation.link})"
    relative = relative_dates(citation.quote, citation.published)
    if relative:
        where += "\n(" + clean("; ".join(str(date) for date in relative)) + ")"
    return where


def citation_field(citation: Citation, value_limit: int = FIELD_VALUE_LIMIT) -> tuple[str, str]:
    """(name, value) of one citation field; the quote is shortened so the location line always survives."""
    name = shorten(f"[{citation.n}] {clean(citation.title or citation.source)}", FIELD_NAME_LIMIT)
    location = "\n" + citation_location(citation)
    context = f"under “{clean(shorten(' '.join(citation.context.split()), 200))}”\n" if citation.context else ""
    room = max(value_limit - len(location) - len(context), 0)
    quote = _blockquote(shorten(clean(" ".join(citation.quote.split())), max(room - 2, 1)))
    value = context + shorten(quote, room) + location
    return name, shorten(value, value_limit)


def embed_length(embed: discord.Embed) -> int:
    """The characters Discord counts towards the 6000 limit of an embed (title, description, fields, footer,
    author)."""
    total = len(embed.title or "") + len(embed.description or "")
    total += sum(len(field.name or "") + len(field.value or "") for field in embed.fields)
    total += len(embed.footer.text or "") + len(embed.author.name or "")
    return total


def render_answer(answer: Answer) -> discord.Embed:
    """One embed per answer, its support tier visible at a glance.

    `answered`: the question as title. `closest`: the question as title too, another colour, and the footer
    says the quotes are the closest passages, not an answer. `none`: "The corpus doesn't say" as title, what is
    missing (when the answer says) as text, and the question above it as the author line. The confidence (not
    for `none`) and the note go in the footer. Either way the question is in the embed, so a follow-up can be
    rebuilt from the message alone (`embed_question`).
    """
    question = shorten(clean(" ".join(answer.question.split())) or "Answer", TITLE_LIMIT)
    text = answer.text.strip()
    author = ""
    if answer.support == "none":
        title, colour, author = ABSTAIN_TITLE, ABSTAIN_COLOUR, question
        missing = _MISSING.match(text)
        if missing:
            text = missing[1][:1].upper() + missing[1][1:] + "."
        elif text.rstrip(".") == ABSTAIN_TITLE:
            text = "Nothing in the indexed documents answers it."
    else:
        title, colour = question, CLOSEST_COLOUR if answer.support == "closest" else ANSWER_COLOUR
    notes = [CLOSEST_NOTE] if answer.support == "closest" else []
    notes += [answer.note] if answer.note else []
    if answer.support != "none":  # "doesn't say" is the answer; a probability beside it would read as doubt
        notes.append(f"confidence {answer.confidence:.0%}")
    footer = shorten(clean(" · ".join(notes)), FOOTER_LIMIT)
    description = shorten(clean(text) or "(no answer text)", DESCRIPTION_LIMIT)

    citations = list(answer.citations)
    shown = citations if len(citations) <= FIELD_COUNT_LIMIT else citations[: FIELD_COUNT_LIMIT - 1]
    fields = [citation_field(citation) for citation in shown]
    fixed = len(title) + len(author) + len(footer) + 60  # 60: room for the "more citations" field

    # Fit the 6000 total: first shorten the answer down to a floor, then the quotes, then drop citations.
    def total() -> int:
        return fixed + len(description) + sum(len(name) + len(value) for name, value in fields)

    if total() > EMBED_TOTAL_LIMIT:
        description = shorten(description, max(_MIN_DESCRIPTION, len(description) - (total() - EMBED_TOTAL_LIMIT)))
    value_limit = FIELD_VALUE_LIMIT
    while total() > EMBED_TOTAL_LIMIT and value_limit > 200:
        value_limit //= 2
        fields = [citation_field(citation, value_limit) for citation in shown]
    while total() > EMBED_TOTAL_LIMIT and fields:
        fields.pop()
    if total() > EMBED_TOTAL_LIMIT:  # only a giant title + footer can get here
        description = shorten(description, max(EMBED_TOTAL_LIMIT - fixed, 1))

    embed = discord.Embed(title=title, description=description, colour=colour)
    for name, value in fields:
        embed.add_field(name=name, value=value, inline=False)
    hidden = len(citations) - len(fields)
    if hidden:
        embed.add_field(name="More citations", value=f"+{hidden} more not shown", inline=False)
    if author:
        embed.set_author(name=author)
    if footer:  # a `none` answer has no note and no confidence: no footer at all (Discord refuses an empty one)
        embed.set_footer(text=footer)
    return embed


def embed_question(embed: discord.Embed) -> str:
    """The question an answer embed was rendered for (see `render_answer`), as the user typed it."""
    return unclean(embed.author.name or embed.title or "")


def embed_answer(embed: discord.Embed) -> str:
    """The answer text of an answer embed."""
    return unclean(embed.description or "")


def render_error(message: str) -> str:
    """A polite one-line reply, fit for `content`."""
    return shorten(clean(message), CONTENT_LIMIT)


def question_from_mention(content: str) -> str:
    """The question in a message that mentions the bot: the mention(s) removed and whitespace collapsed."""
    return " ".join(_MENTION.sub(" ", content).split())


def thread_name(question: str) -> str:
    """A thread title from the question (Discord allows 1–100 characters; mentions would show as raw ids)."""
    name = " ".join(question_from_mention(question).split())
    return shorten(name, THREAD_NAME_LIMIT) or "Question"


def render_sources(documents: Sequence[DocumentRecord]) -> list[discord.Embed]:
    """The indexed documents, one line each, packed into as few embeds as the limits allow (at most 10)."""
    if not documents:
        return [discord.Embed(title="Sources", description="Nothing is indexed yet; run `citebot ingest` first.")]
    lines = [shorten(_source_line(doc), 400) for doc in documents]
    embeds: list[discord.Embed] = []
    budget = EMBED_TOTAL_LIMIT - 100  # below the per-message total of all embeds, with room for titles
    current: list[str] = []
    used = 0
    shown = 0
    for line in lines:
        size = sum(len(existing) + 1 for existing in current) + len(line)
        if size > DESCRIPTION_LIMIT - 100:
            embeds.append(discord.Embed(description="\n".join(current)))
            current = []
        if used + len(line) + 1 > budget:
            break
        current.append(line)
        used += len(line) + 1
        shown += 1
    if current:
        embeds.append(discord.Embed(description="\n".join(current)))
    embeds = embeds[:EMBEDS_PER_MESSAGE]
    embeds[0].title = f"Sources ({len(documents)} documents)"
    if shown < len(documents):
        embeds[-1].set_footer(text=f"+{len(documents) - shown} more not shown; `citebot sources` lists them all")
    return embeds


def _source_line(doc: DocumentRecord) -> str:
    """• **Title** — `source` (a link for web pages) · 4 June 2025 · 12 chunks"""
    source = doc.source.replace("`", chr(39))
    where = _markdown_link(source, doc.url, 80) if doc.url and len(doc.url) <= 300 else f"`{source}`"
    parts = [f"• **{clean(doc.title or doc.source)}** — {where}"]
    if doc.published:
        parts.append(format_day(doc.published))
    parts.append(f"{doc.chunks} chunks")
    return " · ".join(parts)


def render_help() -> discord.Embed:
    """What the bot does and how to use it, in a few lines."""
    text = (
        "I answer questions from the indexed documents and quote the passages I used, verbatim, with [n] markers.\n"
        "• `/ask question:` — ask a question; the answer cites its sources.\n"
        "• Mention me in a channel — I answer in a new thread, where your follow-ups need no mention; elsewhere, "
        "mention me or reply to one of my answers.\n"
        "• `/sources` — list the indexed documents.\n"
        "• 👍 / 👎 under an answer — tell us whether it helped; votes improve the evaluation set.\n"
        "When the documents do not say, I say so instead of guessing."
    )
    return discord.Embed(title="citebot", description=text, colour=ANSWER_COLOUR)


def missing_permission(channel: Any, me: Any) -> str:
    """The first permission the bot lacks to answer in `channel`, named as in Discord's settings."""
    try:
        permissions = channel.permissions_for(me)
    except (AttributeError, TypeError):  # an uncached channel or member: Discord's 403 is all we know
        return "unknown (Discord answered 403 Missing Permissions)"
    thread = isinstance(channel, discord.Thread)
    send = ("send_messages_in_threads", "Send Messages in Threads") if thread else ("send_messages", "Send Messages")
    needed = [
        ("view_channel", "View Channel"),
        send,
        ("embed_links", "Embed Links"),
        ("read_message_history", "Read Message History"),
    ]
    return next((label for name, label in needed if not getattr(permissions, name)), "unknown (Discord said 403)")


def describe_channel(channel: Any) -> str:
    """`#name (id)` for log lines."""
    name = getattr(channel, "name", None)
    return f"#{name} ({channel.id})" if name else f"channel {getattr(channel, 'id', '?')}"


def _markdown_link(label: str, url: str, width: int) -> str:
    """`[label](url)`, the label cut to `width` and neither able to end the link early."""
    return f"[{clean(shorten(label, width)).replace(']', ')')}]({url.replace(')', '%29')})"
