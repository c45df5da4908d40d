"""/ask and messages: the question paths. Deciding whether a message is addressed to the bot, parsing and
sending; answering, rendering and history live elsewhere.

Thread manners (see the README's Discord section): a mention in a channel opens a thread named after the
question; in a thread the bot started, the asker's follow-ups are answered, and anyone else's only when they
mention the bot or reply to one of its answers; in any other thread or forum post a mention is answered in
place, without taking the thread over; a reply to an answer is a follow-up to that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_app.cogs.feedback import feedback_view
from bot.discord_app.conversations import (
    HISTORY_MESSAGES,
    addresses_bot,
    is_small_talk,
    rebuild,
    replied_answer,
)
from bot.discord_app.errors import RESTARTING, polite_message
from bot.discord_app.logs import log_answer
from bot.discord_app.render import (
    NO_MENTIONS,
    describe_channel,
    missing_permission,
    question_from_mention,
    render_answer,
    render_error,
    thread_name,
)
from bot.types import MAX_QUESTION_CHARS, Answer, Turn

if TYPE_CHECKING:
    from bot.discord_app.bot import CitebotBot

log = logging.getLogger("citebot.discord")

ASK_SOMETHING = "Ask me something after the mention, or use `/ask`."
NO_DMS = "I only answer in servers: use `/ask` or mention me in a channel there."


def _ask_cooldown(interaction: discord.Interaction) -> app_commands.Cooldown | None:
    """One question per user per `cooldown_seconds` (read from the bot, so tests can turn it off)."""
    seconds = float(getattr(interaction.client, "cooldown_seconds", 0.0))
    return app_commands.Cooldown(1, seconds) if seconds > 0 else None


class AskCog(commands.Cog):
    def __init__(self, bot: CitebotBot) -> None:
        self.bot = bot
        self.mention_cooldowns = commands.CooldownMapping.from_cooldown(
            1, bot.cooldown_seconds, commands.BucketType.user
        )

    # -- /ask ----------------------------------------------------------------------------------------------

    @app_commands.command(name="ask", description="Ask the documents a question; the answer quotes its sources")
    @app_commands.describe(question=f"What you want to know (up to {MAX_QUESTION_CHARS} characters)")
    @app_commands.checks.dynamic_cooldown(_ask_cooldown, key=lambda interaction: interaction.user.id)
    async def ask(
        self, interaction: discord.Interaction, question: app_commands.Range[str, 1, MAX_QUESTION_CHARS]
    ) -> None:
        """Refuse (ephemeral) what cannot be taken, else defer at once (Discord allows 3 s), answer off the loop
        and edit the answer, or a polite error, into the "thinking" message."""
        refusal = self.refusal(interaction)
        if refusal:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        started = time.perf_counter()

        async def fill(**content: object) -> None:
            if self.bot.expired(interaction):  # its webhook is dead: calling it would only earn a 401
                log.warning("/ask by %s: the interaction expired before the answer was ready", interaction.user.id)
                return
            await interaction.edit_original_response(**content)  # type: ignore[arg-type]

        async with self.bot.job(lambda: fill(content=RESTARTING, embed=None, view=None)):
            try:
                answer = await self.bot.answer(question, start_by=self.bot.start_by(interaction))
                answer_id = await self.bot.record_answer(
                    answer, interaction.user, interaction.channel_id, interaction.guild_id
                )
            except Exception as exc:
                where = f"/ask by {interaction.user.id} in {interaction.channel_id}"
                await fill(content=render_error(polite_message(exc, where)), embed=None, view=None)
                return
            await fill(embed=render_answer(answer), view=feedback_view(answer_id), allowed_mentions=NO_MENTIONS)
            self.answered(answer, interaction.guild_id, interaction.channel_id, started, "slash")

    def refusal(self, interaction: discord.Interaction) -> str | None:
        """Why /ask is not taken here and now (DMs off, channel not allowed, restarting, too busy), or None."""
        if interaction.guild_id is None:
            return None if self.bot.settings.discord_dms else NO_DMS
        channel = interaction.channel
        if channel is not None and not self.bot.allowed_channel(channel):
            return self.allowed_channels_note()
        return self.bot.busy()

    def allowed_channels_note(self) -> str:
        channels = ", ".join(f"<#{channel_id}>" for channel_id in sorted(self.bot.settings.allowed_channel_ids))
        return f"I answer questions in {channels}."

    # -- messages ------------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Every message the bot can see comes here; only those addressed to it are answered."""
        if message.author.bot or self.bot.user is None:
            return
        try:
            await self.handle(message)
        except Exception as exc:  # never "Ignoring exception in on_message": log once, with the traceback
            polite_message(exc, f"message {message.id} by {message.author.id} in {message.channel.id}")

    async def handle(self, message: discord.Message) -> None:
        assert self.bot.user is not None
        bot_id = self.bot.user.id
        channel = message.channel
        if message.guild is None:
            await self.handle_direct_message(message)
            return
        explicit = addresses_bot(message, bot_id)
        ours = isinstance(channel, discord.Thread) and channel.owner_id == bot_id
        if not (explicit or ours):
            return
        if not self.bot.allowed_channel(channel):
            if explicit:
                await self.nudge(message, self.allowed_channels_note())
            return
        question = question_from_mention(message.content)
        # In our thread but not addressed to us: only the asker's real questions.
        if not explicit and (is_small_talk(question) or not await self.asked_by(channel, message.author.id)):  # type: ignore[arg-type]
            return
        if not question:
            await self.nudge(message, ASK_SOMETHING)
            return
        if not self.bot.accepting:
            await self.nudge(message, RESTARTING)
            return
        retry_after = self.mention_cooldowns.update_rate_limit(message) if self.bot.cooldown_seconds > 0 else None
        if retry_after:
            await self.nudge(message, f"Slow down a little: you can ask again in {retry_after:.1f} s.")
            return

        answered = replied_answer(message, bot_id)
        if ours:
            history = await self.thread_history(channel)  # type: ignore[arg-type]
            await self.answer_message(message, question, history, channel, reply=True)
        elif answered is not None:
            history = await asyncio.to_thread(rebuild, [answered], bot_id, self.quoted)
            await self.answer_message(message, question, history, channel, reply=True)
        elif isinstance(channel, discord.TextChannel):
            await self.answer_in_new_thread(message, question)
        else:  # someone else's thread or forum post, a voice or stage channel's chat: answer in place
            await self.answer_message(message, question, [], channel, reply=True)

    async def handle_direct_message(self, message: discord.Message) -> None:
        """In a DM every message is addressed to the bot: answered when DMs are on, else one short note."""
        if not self.bot.settings.discord_dms:
            await self.send(message.channel, message, content=NO_DMS)
            return
        question = question_from_mention(message.content)
        if not question or is_small_talk(question):
            return
        assert self.bot.user is not None
        answered = replied_answer(message, self.bot.user.id)
        history = await asyncio.to_thread(rebuild, [answered], self.bot.user.id, self.quoted) if answered else []
        await self.answer_message(message, question, history, message.channel, reply=bool(answered))

    async def answer_in_new_thread(self, message: discord.Message, question: str) -> None:
        """Open a thread on the question and answer there; if Discord refuses the thread (no Create Public
        Threads permission, a message that has a thread already or was deleted), answer in the channel."""
        try:
            thread = await message.create_thread(name=thread_name(question), auto_archive_duration=1440)
        except discord.HTTPException as exc:
            log.info(
                "could not open a thread in %s (%s %s); answering in the channel",
                describe_channel(message.channel),
                exc.status,
                exc.text or exc.code,
            )
            await self.answer_message(message, question, [], message.channel, reply=True)
            return
        await self.answer_message(message, question, [], thread, reply=False)

    async def answer_message(
        self,
        message: discord.Message,
        question: str,
        history: Sequence[Turn],
        target: discord.abc.Messageable,
        *,
        reply: bool,
    ) -> None:
        """Answer `question` in `target` (as a reply to the message when `reply`); failures get a polite reply."""
        started = time.perf_counter()
        reference = message if reply else None

        async def farewell() -> None:
            await self.send(target, reference, content=RESTARTING)

        async with self.bot.job(farewell):
            with contextlib.suppress(discord.HTTPException):  # a typing indicator is never worth an answer
                await target.typing()
            try:
                answer = await self.bot.answer(question, history)
                guild_id = message.guild.id if message.guild else None
                answer_id = await self.bot.record_answer(answer, message.author, getattr(target, "id", None), guild_id)
            except Exception as exc:
                where = f"message {message.id} by {message.author.id} in {message.channel.id}"
                await self.send(target, reference, content=render_error(polite_message(exc, where)))
                return
            if await self.send(target, reference, embed=render_answer(answer), view=feedback_view(answer_id)):
                self.answered(answer, message.guild.id if message.guild else None, target.id, started, "message")  # type: ignore[attr-defined]

    async def send(
        self, target: discord.abc.Messageable, reply_to: discord.Message | None, **content: object
    ) -> discord.Message | None:
        """Send, or log one line saying which permission is missing when Discord refuses (403)."""
        reference = reply_to.to_reference(fail_if_not_exists=False) if reply_to is not None else None
        try:
            return await target.send(reference=reference, allowed_mentions=NO_MENTIONS, **content)  # type: ignore[call-overload]
        except discord.Forbidden:
            me = getattr(getattr(target, "guild", None), "me", None)
            missing = missing_permission(target, me)
            log.warning("cannot answer in %s: missing the %s permission", describe_channel(target), missing)
        except discord.HTTPException as exc:
            log.warning("cannot answer in %s: %s %s", describe_channel(target), exc.status, exc.text)
        return None

    async def nudge(self, message: discord.Message, text: str) -> None:
        """A short reply only the asker needs: it deletes itself after `nudge_seconds`."""
        await self.send(message.channel, message, content=text, delete_after=self.bot.nudge_seconds)

    # -- history -------------------------------------------------------------------------------------------

    async def asked_by(self, thread: discord.Thread, user_id: int) -> bool:
        """Whether `user_id` asked the question that opened this thread of ours (its starter message)."""
        starter = thread.starter_message
        if starter is None and thread.parent is not None:
            with contextlib.suppress(discord.HTTPException):
                starter = await thread.parent.fetch_message(thread.id)  # type: ignore[union-attr]
        return starter is not None and starter.author.id == user_id

    async def thread_history(self, thread: discord.Thread) -> list[Turn]:
        """The conversation so far, read back from the thread (one REST page, newest first, so reversed)."""
        assert self.bot.user is not None
        try:
            messages = [message async for message in thread.history(limit=HISTORY_MESSAGES)]
        except discord.HTTPException as exc:  # no Read Message History: answer without the context
            log.info("cannot read the history of %s (%s %s)", describe_channel(thread), exc.status, exc.text)
            return []
        return await asyncio.to_thread(rebuild, reversed(messages), self.bot.user.id, self.quoted)

    def quoted(self, answer_id: str) -> tuple[tuple[str, int], ...]:
        """The (doc_id, start) of the passages an answer quoted, from the feedback store (blocking: SQLite)."""
        stored = self.bot.question_log.get(answer_id)
        if stored is None:
            return ()
        return tuple((str(c.get("doc_id", "")), int(c.get("start", 0))) for c in stored.citations)

    def answered(self, answer: Answer, guild_id: int | None, channel_id: int | None, started: float, via: str) -> None:
        """Everything that follows a delivered answer: today its log line."""
        guild = self.bot.get_guild(guild_id) if guild_id is not None else None
        log_answer(
            self.bot.settings,
            answer,
            guild_id=guild_id,
            channel_id=channel_id,
            shard_id=guild.shard_id if guild is not None else None,
            latency_ms=(time.perf_counter() - started) * 1000,
            via=via,
        )
