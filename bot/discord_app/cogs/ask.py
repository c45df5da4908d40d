"""/ask and mentions: the question paths. Parsing and sending only; answering and rendering live elsewhere."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_app.bot import NO_MENTIONS
from bot.discord_app.cogs.feedback import feedback_view
from bot.discord_app.errors import polite_message
from bot.discord_app.render import question_from_mention, render_answer, render_error, thread_name

if TYPE_CHECKING:
    from bot.discord_app.bot import CitebotBot

log = logging.getLogger("citebot.discord")


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

    @app_commands.command(name="ask", description="Ask the documents a question; the answer quotes its sources")
    @app_commands.describe(question="What you want to know (under 1000 characters)")
    @app_commands.checks.dynamic_cooldown(_ask_cooldown, key=lambda interaction: interaction.user.id)
    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        """Defer at once (Discord allows 3 s), answer off the loop, then follow up; errors go to the tree handler."""
        if interaction.channel is not None and not self.bot.allowed_channel(interaction.channel):
            channels = ", ".join(f"<#{channel_id}>" for channel_id in sorted(self.bot.settings.allowed_channel_ids))
            await interaction.response.send_message(f"I answer questions in {channels}.", ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        answer = await self.bot.answer(question)
        answer_id = await self.bot.record_answer(answer, interaction.user, interaction.channel_id, interaction.guild_id)
        await interaction.followup.send(
            embed=render_answer(answer), view=feedback_view(answer_id), allowed_mentions=NO_MENTIONS
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """A mention opens a thread with the answer; any later message in such a thread is a follow-up."""
        if message.author.bot or self.bot.user is None or message.guild is None:
            return
        channel = message.channel
        mentioned = self.bot.user in message.mentions
        follow_up = isinstance(channel, discord.Thread) and channel.id in self.bot.conversations
        if not (mentioned or follow_up) or not self.bot.allowed_channel(channel):
            return
        question = question_from_mention(message.content)
        if not question:
            if mentioned:
                await message.reply("Ask me something after the mention, or use `/ask`.", allowed_mentions=NO_MENTIONS)
            return
        retry_after = self.mention_cooldowns.update_rate_limit(message) if self.bot.cooldown_seconds > 0 else None
        if retry_after:
            await message.reply(
                f"Slow down a little: you can ask again in {retry_after:.1f} s.", allowed_mentions=NO_MENTIONS
            )
            return
        if isinstance(channel, discord.Thread):
            thread = channel  # a follow-up in our thread, or a mention inside any thread: answer right there
        else:
            thread = await message.create_thread(name=thread_name(question), auto_archive_duration=1440)
        self.bot.conversations.start(thread.id)
        await self.answer_in_thread(thread, message, question)

    async def answer_in_thread(self, thread: discord.Thread, message: discord.Message, question: str) -> None:
        """Answer with the thread's history; on failure say so in the thread and log the traceback."""
        where = f"mention by {message.author.id} in {thread.id}"
        try:
            async with thread.typing():
                answer = await self.bot.answer(question, self.bot.conversations.history(thread.id))
            answer_id = await self.bot.record_answer(answer, message.author, thread.id, thread.guild.id)
            await thread.send(embed=render_answer(answer), view=feedback_view(answer_id), allowed_mentions=NO_MENTIONS)
        except Exception as exc:
            await thread.send(render_error(polite_message(exc, where)), allowed_mentions=NO_MENTIONS)
            return
        self.bot.conversations.add(thread.id, answer.turn())
