"""👍/👎 under every answer. The buttons are DynamicItems, so a click on an answer posted before a restart still
reaches us: everything needed (the vote and the answer id) is in the custom_id, nothing is kept in memory."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, Literal, cast

import discord
from discord.ext import commands

from bot.discord_app.errors import polite_message
from bot.discord_app.render import render_error

if TYPE_CHECKING:
    from bot.discord_app.bot import CitebotBot

THANKS = "Thanks for the feedback"
UNKNOWN_ANSWER = "Sorry, I no longer know that answer, so the vote was not recorded."
_LABELS = {"up": "👍", "down": "👎"}


class FeedbackButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"citebot:fb:(?P<vote>up|down):(?P<answer_id>[0-9a-f]{32})",
):
    """custom_id `citebot:fb:<up|down>:<answer_id>`; the click is stored in the feedback SQLite store."""

    def __init__(self, vote: Literal["up", "down"], answer_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                emoji=_LABELS[vote],
                style=discord.ButtonStyle.secondary,
                custom_id=f"citebot:fb:{vote}:{answer_id}",
            )
        )
        self.vote: Literal["up", "down"] = vote
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls, interaction: discord.Interaction, item: discord.ui.Button[discord.ui.View], match: re.Match[str], /
    ) -> FeedbackButton:
        return cls(cast(Literal["up", "down"], match["vote"]), match["answer_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Thank the voter at once (Discord allows 3 s), then write the vote; say so if it could not be kept."""
        bot = cast("CitebotBot", interaction.client)
        await interaction.response.send_message(THANKS, ephemeral=True)
        where = f"vote by {interaction.user.id} on {self.answer_id}"
        try:
            stored = await asyncio.to_thread(
                bot.question_log.record_vote,
                self.answer_id,
                interaction.user.id,
                self.vote,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                message_id=interaction.message.id if interaction.message is not None else None,
            )
            problem = None if stored else UNKNOWN_ANSWER
        except Exception as exc:
            problem = render_error(polite_message(exc, where))
        if problem is not None:
            await interaction.followup.send(problem, ephemeral=True)


def feedback_view(answer_id: str | None) -> discord.ui.View:
    """The two vote buttons for one posted answer (no timeout: they must work for as long as the message lives);
    no buttons when the answer was not logged (`CITEBOT_QUESTION_LOG=false`), since a vote could not be stored."""
    view = discord.ui.View(timeout=None)
    if answer_id is not None:
        view.add_item(FeedbackButton("up", answer_id))
        view.add_item(FeedbackButton("down", answer_id))
    return view


class FeedbackCog(commands.Cog):
    """Holds nothing but documents where feedback lives; the buttons are registered in `CitebotBot.setup_hook`."""

    def __init__(self, bot: CitebotBot) -> None:
        self.bot = bot
