"""citebot's Discord adapter: `citebot discord` calls `main(settings)`.

The only package of citebot that imports discord. Layout: `bot.py` (the client: answer queue, in-flight work,
shutdown, command sync, error handler), `cogs/` (thin: parse, ask, render), `render.py` (pure Answer -> embed
functions within Discord's limits), `conversations.py` (who a message is addressed to, and conversations rebuilt
from Discord's own history), `logs.py` (token redaction, JSON lines, the line per answer), `errors.py` (polite
replies). Startup lives here: settings checks, REST/gateway routing, log in before the engine warms up, the
restart without the message content intent when Discord refuses it (close code 4014), and graceful shutdown on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from bot.config import LLMProvider, Settings
from bot.discord_app.bot import AnswerEngine, CitebotBot
from bot.discord_app.errors import DiscordSetupError, DiscordSyncError
from bot.discord_app.logs import RedactToken, install_redaction, setup_logging
from bot.errors import CitebotError
from bot.question_log import QuestionLog
from bot.web import console_alongside

__all__ = ["CitebotBot", "DiscordSetupError", "RedactToken", "main", "serve"]

log = logging.getLogger("citebot.discord")

MISSING_TOKEN = (
    "citebot: DISCORD_TOKEN is not set; create a bot at https://discord.com/developers/applications "
    "(Bot > Reset Token) and put it in .env"
)
REJECTED_TOKEN = (
    "Discord rejected DISCORD_TOKEN (401 Unauthorized); reset the token in the Developer Portal and update .env"
)
NO_MESSAGE_CONTENT = (
    "Discord refused the Message Content intent (close code 4014): enable it in the Developer Portal > Bot > "
    "Privileged Gateway Intents. Restarting without it: slash commands keep working, but follow-up messages in "
    "threads that do not mention the bot cannot be read."
)
# What the bot needs in a channel (View Channels, Send Messages, Send Messages in Threads, Create Public Threads,
# Embed Links, Read Message History, Add Reactions), as the invite URL asks for it.
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    read_message_history=True,
    add_reactions=True,
)


def unreachable(settings: Settings, error: BaseException) -> str:
    """One line for a Discord that cannot be reached: what failed and what to check."""
    where = settings.discord_api_base or discord.http.Route.BASE
    reason = " ".join(str(error).split()) or type(error).__name__
    return (
        f"citebot: cannot reach Discord at {where} ({reason}); check the network connection and proxy settings, "
        "and CITEBOT_DISCORD_API_BASE / CITEBOT_DISCORD_GATEWAY_URL if you set them"
    )


def route_discord(settings: Settings) -> None:
    """Point discord.py's REST base and default gateway at the configured URLs (a proxy, or a fake in tests).

    Why globals: discord.py reads `Route.BASE` when building every request and has no per-client setting; the
    sharded gateway URL is handled per client in `CitebotBot`.
    """
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def check_settings(settings: Settings) -> str:
    """The token, after checking the Discord settings; raises DiscordSetupError with what to fix."""
    token = settings.discord_token.get_secret_value().strip() if settings.discord_token else ""
    if not token:
        raise DiscordSetupError(MISSING_TOKEN)
    if settings.shard_ids and settings.discord_shard_count is None:
        raise DiscordSetupError(
            "citebot: CITEBOT_DISCORD_SHARD_IDS needs CITEBOT_DISCORD_SHARD_COUNT (the total across all processes)"
        )
    return token


def describe_startup(settings: Settings, engine: AnswerEngine, bot: CitebotBot) -> str:
    """The start-up line: corpus size, answerer and the URL that invites the bot."""
    documents = engine.documents()
    chunks = sum(document.chunks for document in documents)
    answerer = "extractive" if settings.llm is LLMProvider.NONE else f"{settings.llm.value} {settings.llm_model or ''}"
    invite = discord.utils.oauth_url(
        bot.application_id or 0, permissions=INVITE_PERMISSIONS, scopes=("bot", "applications.commands")
    )
    corpus = f"{len(documents)} documents ({chunks} chunks)"
    return f"ready to answer from {corpus}; answerer: {answerer.strip()}; invite: {invite}"


@contextlib.contextmanager
def stop_on_signals(bot_holder: list[CitebotBot]) -> Any:
    """SIGTERM (docker stop, systemd) and SIGINT (Ctrl-C) start a graceful shutdown of the running bot."""
    loop = asyncio.get_running_loop()
    installed = []
    stopping: set[asyncio.Task[None]] = set()  # a reference, so the shutdown task is not garbage-collected

    def stop() -> None:
        if bot_holder:
            task = loop.create_task(bot_holder[-1].shutdown())
            stopping.add(task)
            task.add_done_callback(stopping.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
            loop.add_signal_handler(signum, stop)
            installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def serve(
    settings: Settings,
    engine: AnswerEngine,
    feedback: QuestionLog,
    *,
    bot_class: type[CitebotBot] = CitebotBot,
    reconnect: bool = True,
    **bot_options: Any,
) -> int:
    """Log in, warm the engine up, then run the bot until it is closed; returns the exit status.

    Logging in first makes a wrong token or an unreachable Discord fail in a second, with one line, instead of
    after the model has loaded. If Discord refuses the Message Content intent (4014) the bot is rebuilt without
    it and started again, since slash commands do not need it. SIGTERM and SIGINT shut down gracefully (exit 0).
    """
    token = check_settings(settings)
    route_discord(settings)
    message_content = True
    warmed = False
    bots: list[CitebotBot] = []
    with stop_on_signals(bots):
        while True:
            bot = bot_class(
                engine=engine, settings=settings, feedback=feedback, message_content=message_content, **bot_options
            )
            bots.append(bot)
            try:
                async with bot:
                    await bot.login(token)
                    if not warmed:
                        log.info("logged in; warming up the engine")
                        await asyncio.to_thread(engine.warm_up)
                        warmed = True
                        log.info(await asyncio.to_thread(describe_startup, settings, engine, bot))
                    if bot.accepting:
                        await bot.connect(reconnect=reconnect)
                return 0
            except discord.PrivilegedIntentsRequired:
                if not message_content:
                    raise
                log.error(NO_MESSAGE_CONTENT)
                message_content = False
            except discord.LoginFailure:
                print(REJECTED_TOKEN, file=sys.stderr)
                return 1
            except DiscordSetupError as exc:
                print(str(exc), file=sys.stderr)
                return 2
            except DiscordSyncError as exc:
                print(str(exc), file=sys.stderr)
                return 1
            except (aiohttp.ClientError, OSError) as exc:
                print(unreachable(settings, exc), file=sys.stderr)
                return 1


def main(settings: Settings) -> int:
    """`citebot discord`: run the bot in the foreground until Ctrl-C or SIGTERM.

    Exit status: 0 after a graceful stop, 2 when not configured, 1 when Discord refused or could not be reached.
    With `CITEBOT_WATCH` (`--watch`) a watcher keeps the source list ingested in a thread of this process, and
    logs its cycles with the bot's other lines.
    """
    try:
        token = check_settings(settings)
    except DiscordSetupError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    setup_logging(settings)
    install_redaction(token)

    # Heavy (langchain, the answerers, the ingestion pipeline): only once the settings are known good.
    from bot.engine import Engine
    from ingest.pipeline import IngestPipeline
    from ingest.sources import load_sources
    from ingest.watch import Watcher

    engine = Engine(settings)
    feedback = QuestionLog.for_settings(settings)
    # One writer per process, sharing the engine's model and index: /ingest, and the watcher when asked for.
    ingestor = IngestPipeline.for_settings(settings, engine.store, engine.embedder)
    watcher = None
    if settings.watch:
        try:
            watcher = Watcher(ingestor, load_sources(settings.sources_file))
        except CitebotError as exc:
            print(f"citebot: {exc}", file=sys.stderr)
            return 2
        threading.Thread(target=watcher.run, name="citebot-watch", daemon=True).start()
    try:
        with console_alongside(settings, engine, feedback):  # CITEBOT_WEB_PORT: the console in this process too
            return asyncio.run(serve(settings, engine, feedback, ingestor=ingestor))
    except KeyboardInterrupt:
        return 0
    finally:
        if watcher is not None:
            watcher.stop()
        feedback.close()
