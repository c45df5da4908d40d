"""The Discord client of citebot: owns the shared machinery (answering pool, conversations, feedback, errors).

Why dependencies come in through the constructor: the same class runs in production (`main`) and in the tests
against the fake Discord with a stub engine; nothing here builds an engine or reads the environment.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.discord_app.conversations import Conversations
from bot.discord_app.errors import polite_message
from bot.discord_app.render import render_error
from bot.feedback import FeedbackStore
from bot.types import Answer, DocumentRecord, Turn

if TYPE_CHECKING:
    from ingest.pipeline import IngestReport

log = logging.getLogger("citebot.discord")

MAX_CONCURRENT_ANSWERS = 4
COOLDOWN_SECONDS = 3.0
NO_MENTIONS = discord.AllowedMentions.none()


class AnswerEngine(Protocol):
    """What the bot needs from `bot.engine.Engine` (a protocol so tests can pass a stub)."""

    def ask(self, question: str, history: Sequence[Turn] = (), k: int | None = None) -> Answer: ...

    def warm_up(self) -> None: ...

    def documents(self) -> list[DocumentRecord]: ...


class Ingestor(Protocol):
    """What /ingest needs from `ingest.pipeline.IngestPipeline` (one run at a time, shared with the watcher)."""

    def run(self, targets: Sequence[Path | str], dry_run: bool = False, prune: bool = False) -> IngestReport: ...


def make_intents(message_content: bool) -> discord.Intents:
    """Default intents, plus message content for follow-ups in threads that do not mention the bot."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    return intents


class CitebotBot(commands.AutoShardedBot):
    """citebot on Discord: /ask, /sources, /help, mention threads and 👍/👎 feedback (see the cogs)."""

    def __init__(
        self,
        *,
        engine: AnswerEngine,
        settings: Settings,
        feedback: FeedbackStore,
        message_content: bool = True,
        max_concurrent_answers: int = MAX_CONCURRENT_ANSWERS,
        cooldown_seconds: float = COOLDOWN_SECONDS,
        ingestor: Ingestor | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("shard_count", settings.discord_shard_count)
        options.setdefault("shard_ids", settings.shard_ids)
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=make_intents(message_content),
            help_command=None,
            allowed_mentions=NO_MENTIONS,
            **options,
        )
        self.engine = engine
        self.settings = settings
        self.feedback = feedback
        self.message_content = message_content
        self.cooldown_seconds = cooldown_seconds
        self.ingestor = ingestor  # /ingest is offered only with one
        self.conversations = Conversations()
        # Answering is CPU-bound and blocking: it runs in these threads, never on the event loop, so the
        # gateway heartbeat keeps going; the semaphore bounds how many questions are answered at once.
        self.answer_slots = asyncio.Semaphore(max_concurrent_answers)
        self.answer_pool = ThreadPoolExecutor(max_workers=max_concurrent_answers, thread_name_prefix="citebot-answer")
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]
        if settings.discord_gateway_url:
            self._use_gateway(settings.discord_gateway_url)

    def _use_gateway(self, url: str) -> None:
        """Sharded clients connect to the URL from GET /gateway/bot, not DEFAULT_GATEWAY: substitute ours."""
        fetch = self.http.get_bot_gateway

        async def get_bot_gateway() -> Any:
            shards, _discord_url, limits = await fetch()
            return shards, url, limits

        self.http.get_bot_gateway = get_bot_gateway  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        """Load the cogs, register the persistent vote buttons and sync the slash commands."""
        from bot.discord_app.cogs.ask import AskCog
        from bot.discord_app.cogs.feedback import FeedbackButton, FeedbackCog
        from bot.discord_app.cogs.info import InfoCog

        await self.add_cog(AskCog(self))
        await self.add_cog(InfoCog(self))
        await self.add_cog(FeedbackCog(self))
        if self.ingestor is not None:
            from bot.discord_app.cogs.ingest import IngestCog

            await self.add_cog(IngestCog(self))
        self.add_dynamic_items(FeedbackButton)
        await self.sync_commands()

    async def sync_commands(self) -> None:
        """To the configured guild at once (global sync can take up to an hour to show), else globally."""
        guild_id = self.settings.discord_guild_id
        if guild_id is not None:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d slash commands to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d slash commands globally (they may take a while to appear)", len(synced))

    async def on_ready(self) -> None:
        log.info("connected as %s to %d guild(s), %s shard(s)", self.user, len(self.guilds), self.shard_count)

    async def on_message(self, message: discord.Message, /) -> None:
        """Prefix commands are not used; mentions and thread follow-ups are handled by the ask cog's listener."""

    async def answer(self, question: str, history: Sequence[Turn] = ()) -> Answer:
        """Ask the engine off the event loop, at most `max_concurrent_answers` at a time."""
        async with self.answer_slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.answer_pool, functools.partial(self.engine.ask, question, history))

    async def record_answer(self, answer: Answer) -> str:
        """Store the answer for feedback (SQLite, so in a thread); returns the id its vote buttons carry."""
        return await asyncio.to_thread(self.feedback.record_answer, answer)

    def allowed_channel(self, channel: discord.abc.Snowflake) -> bool:
        """Whether mentions are answered here; threads count as their parent channel."""
        allowed = self.settings.allowed_channel_ids
        if not allowed:
            return True
        channel_id = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
        return channel.id in allowed or channel_id in allowed

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """The one error handler of the slash commands: a polite reply in Discord, the traceback in the log."""
        command = interaction.command.name if interaction.command else "interaction"
        message = render_error(
            polite_message(error, f"/{command} by {interaction.user.id} in {interaction.channel_id}")
        )
        try:
            if interaction.response.is_done():
                await interaction.followup.send(message, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(message, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            log.exception("could not tell the user about the failure of /%s", command)

    async def close(self) -> None:
        await super().close()
        self.answer_pool.shutdown(wait=False, cancel_futures=True)
