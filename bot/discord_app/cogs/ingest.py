"""/ingest: add a web page, feed or sitemap (`url:`) or an attached file to the corpus, from Discord.

Only members with the Manage Server permission, or a role named in `CITEBOT_DISCORD_INGEST_ROLES`, may use it;
others get a polite refusal. The run goes through the same pipeline (and the same safety rules) as `citebot
ingest`, off the event loop, and the reply says what was added, changed or refused, and why. Attached files are
kept under `CITEBOT_DATA_DIR/uploads/<guild id>/`: that path is the source their citations name.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_app.render import CONTENT_LIMIT, NO_MENTIONS, clean, shorten
from bot.errors import BlockedURL
from ingest.fetch import check_url, is_url
from ingest.loaders import MAX_FILE_BYTES, SUPPORTED_SUFFIXES

if TYPE_CHECKING:
    from bot.discord_app.bot import CitebotBot
    from ingest.pipeline import IngestReport

log = logging.getLogger("citebot.discord")

NOT_ALLOWED = (
    "Sorry, only members with the Manage Server permission{roles} can add documents. Ask a moderator to add it."
)
FILE_TYPES = ".pdf, .md, .txt or .html"  # the common ones of ingest.loaders.SUPPORTED_SUFFIXES, for people
NOTHING_GIVEN = f"Give me a `url:` (a web page, RSS/Atom feed or sitemap) or attach a {FILE_TYPES} file."
MAX_LISTED = 10  # sources named per kind of outcome in the reply
_UNSAFE_NAME = re.compile(r"[^\w.\- ]+")


def may_ingest(permissions: discord.Permissions, roles: Iterable[discord.Role], allowed_roles: frozenset[str]) -> bool:
    """Manage Server (or Administrator), or one of the roles the settings name."""
    return permissions.manage_guild or permissions.administrator or any(role.name in allowed_roles for role in roles)


def refusal(allowed_roles: frozenset[str]) -> str:
    roles = f" or the role {', '.join(sorted(allowed_roles))}" if allowed_roles else ""
    return NOT_ALLOWED.format(roles=roles)


def upload_name(filename: str) -> str:
    """A safe file name for an attachment: no folders, no hidden files, no odd characters."""
    name = _UNSAFE_NAME.sub("_", Path(filename).name).strip(" .") or "upload"
    return name


def ingest_reply(report: IngestReport) -> str:
    """What the run did, in a few lines: counts, then the sources added, changed or refused (with why)."""
    plan = report.plan
    titles: dict[str, str] = {}
    if plan is not None:
        for doc_id, new_sources in plan.new_sources.items():
            titles.update(dict.fromkeys(new_sources, plan.new_documents[doc_id].title))
    lines = [
        f"{report.added} added, {report.changed} changed, {report.unchanged} unchanged, {report.removed} removed, "
        f"{len(report.failed)} refused."
    ]
    if plan is not None:
        for label, sources in (("Added", plan.added), ("Changed", plan.changed)):
            for source in sources[:MAX_LISTED]:
                title = f" — {clean(titles[source])}" if titles.get(source) else ""
                lines.append(f"{label}: {_place(source)}{title}")
            if len(sources) > MAX_LISTED:
                lines.append(f"…and {len(sources) - MAX_LISTED} more {label.lower()}.")
    outcomes = [("Refused", problem) for problem in report.failed] + [("Skipped", p) for p in report.skipped]
    for verb, problem in outcomes[:MAX_LISTED]:
        lines.append(f"{verb} {_place(problem.source)}: {clean(problem.reason)}")
    return shorten("\n".join(lines), CONTENT_LIMIT)


def _place(source: str) -> str:
    """A URL in angle brackets (no embed preview), a path in code."""
    return f"<{source}>" if is_url(source) else f"`{source}`"


class IngestCog(commands.Cog):
    def __init__(self, bot: CitebotBot) -> None:
        self.bot = bot

    @app_commands.command(name="ingest", description="Add a web page, feed, sitemap or file to my documents")
    @app_commands.describe(
        url="A web page, RSS/Atom feed or sitemap (http or https)",
        file=f"A {FILE_TYPES} file",
    )
    @app_commands.guild_only()
    async def ingest(
        self, interaction: discord.Interaction, url: str | None = None, file: discord.Attachment | None = None
    ) -> None:
        allowed_roles = self.bot.settings.ingest_role_names
        roles = getattr(interaction.user, "roles", [])
        if not may_ingest(interaction.permissions, roles, allowed_roles):
            log.info("/ingest refused for %s: no permission", interaction.user.id)
            await interaction.response.send_message(refusal(allowed_roles), ephemeral=True)
            return
        if url is None and file is None:
            await interaction.response.send_message(NOTHING_GIVEN, ephemeral=True)
            return
        targets: list[str | Path] = []
        try:
            if url is not None:
                targets.append(check_url(url))
        except BlockedURL as exc:
            await interaction.response.send_message(f"I can't add that: {clean(str(exc))}.", ephemeral=True)
            return
        problem = file_problem(file) if file is not None else None
        if problem is not None:
            await interaction.response.send_message(f"I can't add that: {clean(problem)}.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if file is not None:
            try:
                targets.append(await self._save(file, interaction.guild_id or 0))
            except discord.HTTPException as exc:
                log.warning("/ingest could not download %s: %s", file.filename, exc)
                await interaction.followup.send(
                    f"I couldn't download {clean(file.filename)} from Discord; please attach it again.", ephemeral=True
                )
                return
        assert self.bot.ingestor is not None  # the cog is loaded only with an ingestor
        report = await asyncio.to_thread(self.bot.ingestor.run, targets)
        await interaction.followup.send(ingest_reply(report), ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _save(self, file: discord.Attachment, guild_id: int) -> Path:
        """Download the attachment into the uploads folder (its path is the document's source)."""
        path = self.bot.settings.uploads_dir / str(guild_id) / upload_name(file.filename)
        content = await file.read()
        await asyncio.to_thread(_write, path, content)
        return path


def file_problem(file: discord.Attachment) -> str | None:
    """Why an attachment cannot be ingested, or None."""
    if Path(file.filename).suffix.lower() not in SUPPORTED_SUFFIXES:
        return f"{file.filename} is not a file I read ({FILE_TYPES})"
    if file.size > MAX_FILE_BYTES:
        return f"{file.filename} is over the {MAX_FILE_BYTES / 1e6:.0f} MB limit; split it into parts"
    return None


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")  # a crash mid-write never leaves half a file under its name
    partial.write_bytes(content)
    partial.replace(path)
