"""Conversations rebuilt from Discord itself: which messages are addressed to the bot, and what a follow-up
follows up on.

Why from Discord and not from memory: a deploy, a second shard process or a thousand busy threads would wipe an
in-memory map, and follow-ups would silently lose their context. Everything needed is in the messages: a thread
the bot started has `owner_id` = the bot; each answer embed carries its question and answer text
(`render.embed_question`/`embed_answer`), replies point at the question they answer, and the vote buttons carry
the answer id under which the feedback store keeps the quoted passages (`Turn.quoted`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import discord

from bot.discord_app.render import embed_answer, embed_question, question_from_mention
from bot.keyword import words
from bot.types import Turn

MAX_TURNS = 6
# How far back a thread is read for its conversation (one REST page).
HISTORY_MESSAGES = 50

_ANSWER_ID = re.compile(r"^citebot:fb:(?:up|down):([0-9a-f]{32})$")
# Messages made only of these words thank or acknowledge; they are not questions, even from the asker.
_SMALL_TALK = frozenset(
    """thanks thank thx ty tysm you u so much very many lot ok okay k kk cool great nice perfect awesome got it
    that's thats makes sense helps helped helpful good yes yeah yep no nope sure lol haha wow oh ah i see right
    cheers appreciated appreciate alright""".split()
)


def answer_id(message: discord.Message) -> str | None:
    """The answer id in the vote buttons of one of the bot's answers; None for any other message."""
    for row in message.components:
        for item in getattr(row, "children", ()):
            match = _ANSWER_ID.match(getattr(item, "custom_id", None) or "")
            if match:
                return match[1]
    return None


def is_answer(message: Any, bot_id: int) -> bool:
    """Whether `message` is one of the bot's answers (its own message, with an embed and vote buttons)."""
    return (
        isinstance(message, discord.Message)
        and message.author.id == bot_id
        and bool(message.embeds)
        and answer_id(message) is not None
    )


def addresses_bot(message: discord.Message, bot_id: int) -> bool:
    """A mention of the bot, of its managed role (what Discord inserts when you pick the bot's role in the
    mention list), or a reply to one of its answers."""
    if any(user.id == bot_id for user in message.mentions):
        return True
    if any(role.is_bot_managed() and role.tags and role.tags.bot_id == bot_id for role in message.role_mentions):
        return True
    return replied_answer(message, bot_id) is not None


def replied_answer(message: discord.Message, bot_id: int) -> discord.Message | None:
    """The bot's answer that `message` replies to (Discord includes it in the message as `referenced_message`)."""
    reference = message.reference
    resolved = reference.resolved if reference is not None else None
    return resolved if isinstance(resolved, discord.Message) and is_answer(resolved, bot_id) else None


def is_small_talk(text: str) -> bool:
    """ "thanks!", "ok cool", "👍": a reaction to an answer, not a question."""
    return "?" not in text and all(word in _SMALL_TALK for word in words(text))


Quoted = Callable[[str], tuple[tuple[str, int], ...]]


def rebuild(messages: Iterable[discord.Message], bot_id: int, quoted: Quoted) -> list[Turn]:
    """The conversation in `messages` (oldest first): one turn per answer of the bot, the last MAX_TURNS.

    The question is the message the answer replied to, or (for the first answer of a thread and for /ask) the
    question shown in the embed; the answer is the embed's text; `quoted(answer_id)` gives the passages quoted.
    """
    turns = []
    for message in messages:
        if not is_answer(message, bot_id):
            continue
        embed = message.embeds[0]
        reference = message.reference
        question_message = reference.resolved if reference is not None else None
        question = (
            question_from_mention(question_message.content)
            if isinstance(question_message, discord.Message) and question_message.content
            else embed_question(embed)
        )
        identifier = answer_id(message)
        turns.append(Turn(question, embed_answer(embed), quoted(identifier) if identifier else ()))
    return turns[-MAX_TURNS:]
