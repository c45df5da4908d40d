"""citebot's Discord adapter: `citebot discord` calls `main(settings)`.

The only package of citebot that imports discord. Layout: `bot.py` (the client, its answering pool and its error
handler), `cogs/` (thin: parse, ask, render), `render.py` (pure Answer -> embed functions within Discord's limits),
`conversations.py` (thread history), `errors.py` (polite replies). Startup lives here: settings checks, logging
with token redaction, REST/gateway routing, engine warm-up, and the restart without the message content intent
when Discord refuses it (close code 4014).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl

from bot.config import Settings
from bot.discord_app.bot import AnswerEngine, CitebotBot
from bot.discord_app.errors import DiscordSetupError
from bot.errors import CitebotError
from bot.feedback import FeedbackStore

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
REDACTED = "[redacted]"


class RedactToken(logging.Filter):
    """Replaces the token in log records (message, arguments and traceback) before any handler writes them.

    Why: defence in depth; a library that logs a header or a URL must never put the bot's credentials in a log.
    Installed on the citebot and discord loggers and on the root handlers, because a logger's own filters do not
    see records that propagate up from its children.
    """

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.token:
            return True
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, REDACTED), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self.token in record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, REDACTED)
        return True


def install_redaction(token: str) -> RedactToken:
    """Attach one RedactToken to the citebot and discord loggers and to every root handler."""
    redact = RedactToken(token)
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in ("citebot", "discord", "bot")]
    targets += logging.getLogger().handlers
    for target in targets:
        for old in [f for f in target.filters if isinstance(f, RedactToken)]:
            target.removeFilter(old)  # idempotent: a second main() in one process must not stack filters
        target.addFilter(redact)
    return redact


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


async def serve(
    settings: Settings,
    engine: AnswerEngine,
    feedback: FeedbackStore,
    *,
    bot_class: type[CitebotBot] = CitebotBot,
    reconnect: bool = True,
    **bot_options: Any,
) -> int:
    """Warm the engine up, then run the bot until it is closed; returns the exit status.

    If Discord refuses the Message Content intent (4014) the bot is rebuilt without it and started again, since
    slash commands do not need it. A rejected token prints one line and returns 1.
    """
    token = check_settings(settings)
    route_discord(settings)
    log.info("warming up the engine")
    await asyncio.to_thread(engine.warm_up)
    message_content = True
    while True:
        bot = bot_class(
            engine=engine, settings=settings, feedback=feedback, message_content=message_content, **bot_options
        )
        try:
            async with bot:
                await bot.start(token, reconnect=reconnect)
            return 0
        except discord.PrivilegedIntentsRequired:
            if not message_content:
                raise
            log.error(NO_MESSAGE_CONTENT)
            message_content = False
        except discord.LoginFailure:
            print(REJECTED_TOKEN, file=sys.stderr)
            return 1


def main(settings: Settings) -> int:
    """`citebot discord`: run the bot in the foreground until Ctrl-C. 2 = not configured, 1 = refused by Discord.

    With `CITEBOT_WATCH` (`--watch`) a watcher keeps the source list ingested in a thread of this process."""
    try:
        token = check_settings(settings)
    except DiscordSetupError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        discord.utils.setup_logging(level=logging.INFO)
    install_redaction(token)

    from bot.engine import Engine
    from ingest.pipeline import IngestPipeline
    from ingest.sources import load_sources
    from ingest.watch import Watcher

    engine = Engine(settings)
    feedback = FeedbackStore.for_settings(settings)
    # One writer per process, sharing the engine's model and index: /ingest, and the watcher when asked for.
    ingestor = IngestPipeline.for_settings(settings, engine.store, engine.embedder)
    watcher = None
    if settings.watch:
        try:
            sources = load_sources(settings.sources_file)
            watcher = Watcher(ingestor, sources, say=lambda line: print(line, file=sys.stderr, flush=True))
        except CitebotError as exc:
            print(f"citebot: {exc}", file=sys.stderr)
            return 2
        threading.Thread(target=watcher.run, name="citebot-watch", daemon=True).start()
    try:
        return asyncio.run(serve(settings, engine, feedback, ingestor=ingestor))
    except KeyboardInterrupt:
        return 0
    finally:
        if watcher is not None:
            watcher.stop()
