"""/sources and /help: what is indexed and how to use the bot."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_app.render import NO_MENTIONS, render_help, render_sources

if TYPE_CHECKING:
    from bot.discord_app.bot import CitebotBot


class InfoCog(commands.Cog):
    def __init__(self, bot: CitebotBot) -> None:
        self.bot = bot

    @app_commands.command(name="sources", description="List the documents I answer from")
    async def sources(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        documents = await asyncio.to_thread(self.bot.engine.documents)  # reads the index: keep it off the loop
        await interaction.followup.send(embeds=render_sources(documents), ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="help", description="What citebot does and how to ask it")
    async def help(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(embed=render_help(), ephemeral=True, allowed_mentions=NO_MENTIONS)
