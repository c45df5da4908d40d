"""Logging of the Discord adapter: token redaction, text or JSON lines, and one line per answered question.

Why its own module: what reaches the logs is an operations contract (collectors parse the JSON lines, nobody
may ever find the token in them), so the format and the redaction live in one place.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import discord

from bot.config import Settings
from bot.types import Answer

log = logging.getLogger("citebot.discord")

REDACTED = "[redacted]"
# The attributes every LogRecord has; anything else was passed with `extra=` and belongs in the JSON line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["traceback"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(settings: Settings) -> None:
    """INFO and above to stderr, as text or as JSON lines (`CITEBOT_LOG_FORMAT`).

    The CLI has already set up a stderr handler (at WARNING, for the other commands); a bot's start-up and
    answer lines are INFO, so the level is lowered, never raised (`-v` keeps DEBUG), and in JSON mode the plain
    stderr handlers get the JSON formatter. Other handlers (a test's log capture) are left alone.

    Also silences discord.py's voice warnings (PyNaCl, davey): citebot has no voice features, and a warning at
    every start about a feature nobody uses teaches operators to ignore warnings.
    """
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
    root = logging.getLogger()
    if not root.handlers:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(stderr)
    root.setLevel(min(root.level or logging.WARNING, logging.INFO))
    if settings.log_format == "json":
        for handler in root.handlers:
            if type(handler) is logging.StreamHandler:
                handler.setFormatter(JsonFormatter())


def log_answer(
    settings: Settings,
    answer: Answer,
    *,
    guild_id: int | None,
    channel_id: int | None,
    shard_id: int | None,
    latency_ms: float,
    via: str,
) -> None:
    """The one line per answered question: where, how fast, how well supported; the question only on opt-in."""
    fields: dict[str, Any] = {
        "event": "answer",
        "via": via,
        "guild": guild_id,
        "channel": channel_id,
        "shard": shard_id,
        "latency_ms": round(latency_ms, 1),
        "support": answer.support,
        "confidence": round(answer.confidence, 3),
        "citations": len(answer.citations),
    }
    if settings.log_questions:
        fields["question"] = answer.question
    text = " ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in fields.items() if key != "event")
    log.info("answered %s", text, extra=fields)
