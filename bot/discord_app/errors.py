"""Errors of the Discord adapter and the one place that turns any failure into a polite reply plus a log line.

Why one place: slash commands, mentions and button clicks fail the same ways (bad question, cooldown, bug), and
users must always get an answer while operators always get the full traceback; nothing is silenced.
"""

from __future__ import annotations

import logging

from discord import app_commands

from bot.errors import BusyError, CitebotError, QuestionError, StoreError

log = logging.getLogger("citebot.discord")

GENERIC_FAILURE = "Sorry, something went wrong while answering; the error was logged."
INDEX_UNAVAILABLE = "The index is unavailable right now; try again shortly."
BUSY = "I'm answering a lot of questions right now; try again in a minute."
RESTARTING = "I'm restarting; ask again in a minute."


class DiscordSetupError(CitebotError):
    """The Discord adapter cannot start (bad token, bad shard settings); the message says what to fix."""


class DiscordSyncError(CitebotError):
    """Discord refused or failed to sync the slash commands for a reason that is not a setting; one line says it."""


def polite_message(error: BaseException, where: str) -> str:
    """What to tell the user about `error`; unexpected errors are logged with their traceback here.

    `where` (e.g. "/ask by 123 in 456") goes into the log line so an operator can find the conversation.
    """
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down a little: you can ask again in {error.retry_after:.1f} s."
    if isinstance(error, QuestionError):
        log.info("%s: refused the question: %s", where, error)
        return f"I can't answer that: {error}."
    if isinstance(error, BusyError):
        log.info("%s: busy: %s", where, error)
        return BUSY
    if isinstance(error, StoreError):
        log.warning("%s: %s", where, error)  # one line: the store's message says which index and why
        return INDEX_UNAVAILABLE
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    log.error("%s failed: %s: %s", where, type(error).__name__, error, exc_info=error)
    return GENERIC_FAILURE
