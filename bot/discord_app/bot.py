"""The Discord client of citebot: owns the shared machinery (answer queue, in-flight work, command sync, errors).

Why dependencies come in through the constructor: the same class runs in production (`main`) and in the tests
against the fake Discord with a stub engine; nothing here builds an engine or reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.discord_app.cogs.ask import AskCog
from bot.discord_app.cogs.feedback import FeedbackButton, FeedbackCog
from bot.discord_app.cogs.info import InfoCog
from bot.discord_app.cogs.ingest import IngestCog
from bot.discord_app.errors import BUSY, RESTARTING, DiscordSetupError, DiscordSyncError, polite_message
from bot.discord_app.render import NO_MENTIONS, render_error
from bot.errors import BusyError
from bot.question_log import QuestionLog
from bot.types import Answer, DocumentRecord, Turn

if TYPE_CHECKING:
    from ingest.pipeline import IngestReport

log = logging.getLogger("citebot.discord")

MAX_CONCURRENT_ANSWERS = 4
# Questions allowed to wait for a free answering slot; beyond this the asker is told to try again shortly.
MAX_WAITING_ANSWERS = 32
COOLDOWN_SECONDS = 3.0
# Discord: "Interaction tokens are valid for 15 minutes"; work that cannot start this long before the token dies
# is refused politely instead of answered into a dead webhook.
INTERACTION_LIFETIME = timedelta(minutes=15)
START_MARGIN = timedelta(minutes=2)
NUDGE_SECONDS = 8.0
SHUTDOWN_GRACE_SECONDS = 10.0
# Touched while the gateway is connected, for container healthchecks (deploy/Dockerfile reads its age).
HEARTBEAT_FILE = "discord.heartbeat"
HEARTBEAT_SECONDS = 30.0

Farewell = Callable[[], Awaitable[None]]


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


def command_differs(local: Any, remote: Any) -> bool:
    """Whether Discord's copy of a command (`remote`) differs from ours in anything we set.

    Why not plain equality: Discord adds fields (ids, versions) and leaves out false and empty ones, so only the
    keys of our payload count, and an absent value equals a false or empty one.
    """
    if isinstance(local, dict):
        remote = remote if isinstance(remote, dict) else {}
        return any(command_differs(value, remote.get(key)) for key, value in local.items())
    if isinstance(local, list):
        remote = remote if isinstance(remote, list) else []
        return len(local) != len(remote) or any(command_differs(a, b) for a, b in zip(local, remote, strict=True))
    return local != remote and bool(local or remote)


class CitebotBot(commands.AutoShardedBot):
    """citebot on Discord: /ask, /sources, /help, mentions, threads and 👍/👎 feedback (see the cogs)."""

    def __init__(
        self,
        *,
        engine: AnswerEngine,
        settings: Settings,
        feedback: QuestionLog,
        message_content: bool = True,
        max_concurrent_answers: int = MAX_CONCURRENT_ANSWERS,
        max_waiting_answers: int = MAX_WAITING_ANSWERS,
        cooldown_seconds: float = COOLDOWN_SECONDS,
        interaction_lifetime: timedelta = INTERACTION_LIFETIME,
        start_margin: timedelta = START_MARGIN,
        nudge_seconds: float = NUDGE_SECONDS,
        shutdown_grace: float = SHUTDOWN_GRACE_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
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
        self.question_log = feedback
        self.message_content = message_content
        self.cooldown_seconds = cooldown_seconds
        self.interaction_lifetime = interaction_lifetime
        self.start_margin = start_margin
        self.nudge_seconds = nudge_seconds
        self.shutdown_grace = shutdown_grace
        self.heartbeat_seconds = heartbeat_seconds
        self._heartbeat: asyncio.Task[None] | None = None
        self.accepting = True
        self.ingestor = ingestor  # /ingest is offered only with one
        # Answering is CPU-bound and blocking: it runs in these threads, never on the event loop, so the
        # gateway heartbeat keeps going; the semaphore bounds how many questions are answered at once and
        # `max_waiting_answers` how many may queue for a slot.
        self.answer_slots = asyncio.Semaphore(max_concurrent_answers)
        self.max_waiting_answers = max_waiting_answers
        self.waiting_answers = 0
        self.answer_pool = ThreadPoolExecutor(max_workers=max_concurrent_answers, thread_name_prefix="citebot-answer")
        self._in_flight: dict[int, Farewell] = {}
        self._job_ids = itertools.count()
        self._idle = asyncio.Event()
        self._idle.set()
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
        """Load the cogs, register the persistent vote buttons and sync the slash commands (once per deploy)."""
        await self.add_cog(AskCog(self))
        await self.add_cog(InfoCog(self))
        await self.add_cog(FeedbackCog(self))
        if self.ingestor is not None:
            await self.add_cog(IngestCog(self))
        self.add_dynamic_items(FeedbackButton)
        self._heartbeat = asyncio.create_task(self.beat())
        if self.shard_ids is None or 0 in self.shard_ids:
            await self.sync_commands()
        else:
            log.info("command sync is left to the process that runs shard 0")

    async def sync_commands(self) -> None:
        """Sync the slash commands only when Discord's copy differs from this version's.

        To the configured guild (commands show at once) and then no global copy, so moving from global to guild
        commands never shows /ask twice; else globally (it may take a while to show). A guild the bot is not in
        (403 Missing Access) or that does not exist (404 Unknown Guild) stops the start with one line naming the
        setting; any other refusal of the sync is one line too.
        """
        guild_id = self.settings.discord_guild_id
        guild = discord.Object(guild_id) if guild_id is not None else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        local = [command.to_dict(self.tree) for command in self.tree.get_commands(guild=guild)]
        try:
            if guild_id is None:
                remote = await self.http.get_global_commands(self.application_id)  # type: ignore[arg-type]
            else:
                remote = await self.http.get_guild_commands(self.application_id, guild_id)  # type: ignore[arg-type]
            changed = len(local) != len(remote) or any(
                command_differs(mine, next((r for r in remote if r["name"] == mine["name"]), None)) for mine in local
            )
            if changed:
                synced = await self.tree.sync(guild=guild)
                where = f"guild {guild_id}" if guild_id is not None else "globally (they may take a while to appear)"
                log.info("synced %d slash commands %s", len(synced), where)
            else:
                log.info("slash commands are up to date; not synced")
            if guild_id is not None and await self.http.get_global_commands(self.application_id):  # type: ignore[arg-type]
                await self.http.bulk_upsert_global_commands(self.application_id, [])  # type: ignore[arg-type]
                log.info("removed the global copies of the commands, now synced to guild %s", guild_id)
        except (discord.Forbidden, discord.NotFound) as exc:
            if guild_id is None:
                raise DiscordSyncError(
                    f"citebot: Discord refused to sync the slash commands ({exc.status} {exc.text}); check that "
                    "DISCORD_TOKEN belongs to the bot's application"
                ) from None
            raise DiscordSetupError(
                f"citebot: cannot sync commands to CITEBOT_DISCORD_GUILD_ID={guild_id} ({exc.status} {exc.text}): "
                "invite the bot to that server, or fix or unset the id"
            ) from None
        except discord.HTTPException as exc:
            raise DiscordSyncError(
                f"citebot: Discord failed to sync the slash commands ({exc.status} {exc.text}); start the bot again "
                "shortly"
            ) from None

    async def beat(self) -> None:
        """Touch the heartbeat file every `heartbeat_seconds` while a shard of this process is connected."""
        path = self.settings.data_dir / HEARTBEAT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        while not self.is_closed():
            if self.is_ready() and any(not shard.is_closed() for shard in self.shards.values()):
                await asyncio.to_thread(path.touch)
            await asyncio.sleep(self.heartbeat_seconds)

    async def on_ready(self) -> None:
        log.info("connected as %s to %d guild(s), %s shard(s)", self.user, len(self.guilds), self.shard_count)

    async def on_message(self, message: discord.Message, /) -> None:
        """Prefix commands are not used; mentions and thread follow-ups are handled by the ask cog's listener."""

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """Event handlers catch what they expect; anything else is a bug, logged here once with its traceback."""
        log.exception("unexpected error in %s", event_method)

    # -- answering -----------------------------------------------------------------------------------------

    def busy(self) -> str | None:
        """Why no new question can be taken now (restarting, or too many waiting), else None."""
        if not self.accepting:
            return RESTARTING
        if self.waiting_answers >= self.max_waiting_answers:
            return BUSY
        return None

    def start_by(self, interaction: discord.Interaction) -> float:
        """The latest moment (time.time()) an answer to `interaction` may start and still reach its webhook."""
        expires = interaction.created_at + self.interaction_lifetime - self.start_margin
        return expires.timestamp()

    def expired(self, interaction: discord.Interaction) -> bool:
        """Whether the interaction's token is dead (Discord refuses its webhook after 15 minutes)."""
        return discord.utils.utcnow() >= interaction.created_at + self.interaction_lifetime

    async def answer(self, question: str, history: Sequence[Turn] = (), *, start_by: float | None = None) -> Answer:
        """Ask the engine off the event loop, at most `max_concurrent_answers` at a time.

        Raises BusyError when `max_waiting_answers` already wait, or when no slot frees up before `start_by`.
        """
        if self.waiting_answers >= self.max_waiting_answers:
            raise BusyError("too many questions are waiting")
        self.waiting_answers += 1
        try:
            timeout = None if start_by is None else max(start_by - time.time(), 0.0)
            await asyncio.wait_for(self.answer_slots.acquire(), timeout)
        except TimeoutError:
            raise BusyError("no answering slot freed up in time") from None
        finally:
            self.waiting_answers -= 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.answer_pool, functools.partial(self.engine.ask, question, history))
        finally:
            self.answer_slots.release()

    async def record_answer(
        self, answer: Answer, user: discord.abc.User, channel_id: int | None, guild_id: int | None
    ) -> str | None:
        """Log the answer with where it was posted and who asked (queued, so it never waits for the disk); returns
        the id its vote buttons carry, None when the question log is off."""
        return self.question_log.record_answer(
            answer, "discord", guild_id=guild_id, channel_id=channel_id, user_id=user.id
        )

    def allowed_channel(self, channel: discord.abc.Snowflake) -> bool:
        """Whether mentions are answered here; threads count as their parent channel."""
        allowed = self.settings.allowed_channel_ids
        if not allowed:
            return True
        channel_id = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
        return channel.id in allowed or channel_id in allowed

    # -- in-flight work and shutdown -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def job(self, farewell: Farewell) -> AsyncIterator[None]:
        """Track one answer in progress; `farewell` tells its asker politely if shutdown cannot wait for it."""
        job_id = next(self._job_ids)
        self._in_flight[job_id] = farewell
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight.pop(job_id, None)
            if not self._in_flight:
                self._idle.set()

    async def shutdown(self) -> None:
        """Stop taking questions, let answers in progress finish for up to `shutdown_grace` seconds, tell the
        askers of the others that the bot is restarting, then close the gateway."""
        if not self.accepting:
            return
        self.accepting = False
        log.info("shutting down: %d answer(s) in progress", len(self._in_flight))
        try:
            await asyncio.wait_for(self._idle.wait(), self.shutdown_grace)
        except TimeoutError:
            unfinished = list(self._in_flight.values())
            self._in_flight.clear()
            log.warning("shutting down: %d answer(s) did not finish in time; telling their askers", len(unfinished))
            await asyncio.gather(*(farewell() for farewell in unfinished), return_exceptions=True)
        await self.close()

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """The one error handler of the slash commands: a polite reply in Discord, the traceback in the log.

        After a public defer the reply goes into the "thinking" message (a follow-up would replace it anyway,
        ignoring the ephemeral flag); before any response it is an ephemeral message.
        """
        command = interaction.command.name if interaction.command else "interaction"
        message = render_error(
            polite_message(error, f"/{command} by {interaction.user.id} in {interaction.channel_id}")
        )
        try:
            if not interaction.response.is_done():
                await interaction.response.send_message(message, ephemeral=True, allowed_mentions=NO_MENTIONS)
            elif self.expired(interaction):
                log.warning("/%s by %s: expired before the error was shown", command, interaction.user.id)
            else:
                await interaction.edit_original_response(content=message, embed=None, view=None)
        except discord.HTTPException as exc:
            log.warning("could not tell the user about the failure of /%s: %s %s", command, exc.status, exc.text)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await super().close()
        self.answer_pool.shutdown(wait=False, cancel_futures=True)
