"""/ingest on Discord, end to end: the real discord.py client and bot against the fake Discord, the real engine and
pipeline (hashing embedder), and the local news site for URLs. Also how web citations and sources render."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.discord_app.cogs.ingest import ingest_reply, upload_name
from bot.discord_app.render import citation_location, render_answer, render_sources
from bot.engine import Engine
from bot.types import Answer, Citation, DocumentRecord
from ingest.pipeline import IngestPipeline, IngestReport
from tests.fake_discord import (
    PERMISSION_MANAGE_GUILD,
    FakeDiscord,
    FakeGuild,
    FakeRole,
    FakeUser,
    validate_message_body,
)
from tests.test_discord_e2e import TOKEN, WAIT, restore_discord_globals, running_bot
from tests.web_site import RSS, Site, article_page, rss_feed

__all__ = ["restore_discord_globals"]  # the e2e module's autouse fixture: put discord.py's globals back

pytestmark = pytest.mark.timeout(30)

STORY = (
    "/news/lanterns.html",
    "Lantern festival moves to the quay",
    [
        "The lantern festival will be held on the quay this year, the organisers said on Monday.",
        "More than two thousand lanterns are expected to be released over the estuary.",
    ],
    "2025-06-04T09:30:00Z",
)


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        path, title, paragraphs, published = STORY
        running.put(path, article_page(title, paragraphs, published=published))
        running.put("/feed.xml", rss_feed(running, [(title, path, published)]), RSS)
        yield running


@pytest.fixture
def engine(settings: Settings, corpus: Path) -> Engine:
    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    return engine


class World:
    """A guild with an editor (Manage Server), a member with a named role, and a member with neither."""

    def __init__(self) -> None:
        self.managers = FakeRole("Moderators", permissions=PERMISSION_MANAGE_GUILD)
        self.editors = FakeRole("Editors")
        self.readers = FakeRole("Readers")
        self.moderator, self.editor, self.reader = FakeUser("mo"), FakeUser("ed"), FakeUser("rita")
        self.guild = FakeGuild(
            "newsroom",
            members=[self.moderator, self.editor, self.reader],
            roles=[self.managers, self.editors, self.readers],
            member_roles={
                self.moderator.id: [self.managers.id],
                self.editor.id: [self.editors.id],
                self.reader.id: [self.readers.id],
            },
        )


async def ingest(fake: FakeDiscord, user: FakeUser, **options: Any) -> tuple[dict[str, Any], str]:
    """Run /ingest; returns (the callback body, the text the user finally sees)."""
    resolved = options.pop("resolved", None)
    interaction = await fake.dispatch_slash_command("ingest", options, user=user, resolved=resolved)
    callback = await fake.wait_for_callback(interaction, WAIT)
    if callback.json["type"] == 4:  # answered at once (a refusal)
        return callback.json, callback.json["data"]["content"]
    assert callback.json["type"] == 5, "a long run is deferred first"
    followup = await fake.wait_for_followup(interaction, WAIT)
    return callback.json, followup.json["content"]


def bot_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"allow_private_urls": True, "discord_ingest_roles": "Editors", **changes})


async def test_ingest_is_offered_with_a_url_and_a_file_option(settings: Settings, engine: Engine) -> None:
    ingestor = IngestPipeline.for_settings(bot_settings(settings), engine.store, engine.embedder)
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake, ingestor=ingestor):
        command = fake.find_command("ingest", fake.guild.id)
        assert command is not None
        assert [(o["name"], o["type"], o.get("required", False)) for o in command["options"]] == [
            ("url", 3, False),
            ("file", 11, False),
        ]
    assert fake.violations == []


async def test_members_without_permission_are_refused_politely(settings: Settings, engine: Engine, site: Site) -> None:
    world = World()
    ingestor = IngestPipeline.for_settings(bot_settings(settings), engine.store, engine.embedder)
    before = {record.doc_id for record in engine.documents()}
    async with (
        FakeDiscord(token=TOKEN, guilds=[world.guild]) as fake,
        running_bot(bot_settings(settings), engine, fake, ingestor=ingestor),
    ):
        for user in (world.reader, fake.default_user):
            callback, text = await ingest(fake, user, url=site.url("/news/lanterns.html"))
            assert callback["data"]["flags"] & 64, "the refusal is ephemeral"
            assert text.startswith("Sorry, only members with the Manage Server permission or the role Editors")
    assert site.requests == [] and {record.doc_id for record in engine.documents()} == before
    assert fake.violations == []


async def test_a_moderator_adds_a_url_and_the_answer_cites_it_with_date_and_link(settings, engine, site) -> None:
    world = World()
    ingestor = IngestPipeline.for_settings(bot_settings(settings), engine.store, engine.embedder)
    async with (
        FakeDiscord(token=TOKEN, guilds=[world.guild]) as fake,
        running_bot(bot_settings(settings), engine, fake, ingestor=ingestor) as run,
    ):
        url = site.url("/news/lanterns.html")
        callback, text = await ingest(fake, world.moderator, url=url)
        assert callback["data"]["flags"] & 64
        assert text.splitlines()[0] == "1 added, 0 changed, 0 unchanged, 0 removed, 0 refused."
        assert f"Added: <{url}> — Lantern festival moves to the quay" in text

        await asyncio.sleep(1.1)  # the engine looks for new documents at most once a second
        _interaction, followup = await run.ask("Where will the lantern festival be held?")
        field = next(f for f in followup.json["embeds"][0]["fields"] if "quay" in f["value"])
        assert f"]({url}#:~:text=" in field["value"], "the citation links to the passage on the page"
        assert "4 June 2025" in field["value"]
        assert "on Monday = 2 June 2025" in field["value"]
    assert fake.violations == []


async def test_a_role_named_in_the_settings_may_ingest_a_feed(settings, engine, site) -> None:
    world = World()
    ingestor = IngestPipeline.for_settings(bot_settings(settings), engine.store, engine.embedder)
    async with (
        FakeDiscord(token=TOKEN, guilds=[world.guild]) as fake,
        running_bot(bot_settings(settings), engine, fake, ingestor=ingestor),
    ):
        _callback, text = await ingest(fake, world.editor, url=site.url("/feed.xml"))
        assert text.startswith("1 added,")
        _callback, text = await ingest(fake, world.editor, url=site.url("/news/missing.html"))
        assert text.startswith("0 added, 0 changed, 0 unchanged, 0 removed, 1 refused.")
        assert "not found (HTTP 404)" in text
        _callback, text = await ingest(fake, world.editor, url="ftp://example.com/feed.xml")
        assert text == (
            "I can't add that: cannot fetch ftp://example.com/feed.xml: citebot fetches only http:// and https:// URLs."
        )
        _callback, text = await ingest(fake, world.editor)
        assert text.startswith("Give me a `url:`")
    assert fake.violations == []


async def test_an_attached_file_is_kept_and_ingested(settings: Settings, engine: Engine) -> None:
    world = World()
    ingestor = IngestPipeline.for_settings(bot_settings(settings), engine.store, engine.embedder)
    async with (
        FakeDiscord(token=TOKEN, guilds=[world.guild]) as fake,
        running_bot(bot_settings(settings), engine, fake, ingestor=ingestor),
    ):
        note = b"---\ntitle: Harbour notice\ndate: 2025-06-05\n---\nThe harbour closes for repairs on Friday.\n"
        attachment = fake.add_attachment("harbour notice.md", note, "text/markdown")
        resolved = {"attachments": {attachment["id"]: attachment}}
        _callback, text = await ingest(fake, world.moderator, file=attachment["id"], resolved=resolved)
        assert text.startswith("1 added,") and "Harbour notice" in text
        saved = settings.uploads_dir / world.guild.id / "harbour notice.md"
        assert saved.read_bytes() == note
        record = next(r for r in engine.store.documents().values() if r.title == "Harbour notice")
        assert record.published == "2025-06-05" and record.origin == "file"

        program = fake.add_attachment("tool.exe", b"MZ", "application/octet-stream")
        _callback, text = await ingest(
            fake, world.moderator, file=program["id"], resolved={"attachments": {program["id"]: program}}
        )
        assert text == "I can't add that: tool.exe is not a file I read (.pdf, .md, .txt or .html)."
    assert fake.violations == []


# -- rendering -----------------------------------------------------------------------------------------------


def web_citation(**changes: Any) -> Citation:
    fields: dict[str, Any] = {
        "n": 1,
        "source": "https://news.example/2025/06/bridge",
        "title": "Bridge costs rise",
        "start": 10,
        "end": 96,
        "quote": "The estimated cost has risen to £2.8bn, the council said on Monday (up from £2.1bn).",
        "score": 0.7,
        "url": "https://news.example/2025/06/bridge",
        "published": "2025-06-04",
    }
    fields.update(changes)
    return Citation(**fields)


def test_a_web_citation_links_to_the_quoted_passage() -> None:
    location = citation_location(web_citation())
    link = location.split("](", 1)[1].split(")", 1)[0]
    assert link.startswith("https://news.example/2025/06/bridge#:~:text=")
    assert link.endswith("#:~:text=The%20estimated%20cost%20has%20risen,on%20Monday%20%28up%20from%20%C2%A32.1bn%29.")
    assert "· 4 June 2025" in location and "(on Monday = 2 June 2025)" in location
    file_citation = citation_location(web_citation(url=None, source="corpus/a.txt", published=None))
    assert file_citation == "`corpus/a.txt` · chars 10–96"


def test_long_links_and_many_web_citations_still_fit() -> None:
    citations = tuple(
        web_citation(n=n, url="https://x.example/" + "p" * 900, quote="word " * 400) for n in range(1, 30)
    )
    embed = render_answer(Answer("q", "a " * 3000, citations, "answered"))
    assert validate_message_body({"embeds": [embed.to_dict()]}) is None


def test_sources_show_dates_and_links() -> None:
    web = DocumentRecord(
        "a", ("https://news.example/a",), "Bridge", 3, "now", url="https://news.example/a", published="2025-06-04"
    )
    local = DocumentRecord("b", ("corpus/b.txt",), "Seoul", 5, "now")
    [embed] = render_sources([web, local])
    assert "[https://news.example/a](https://news.example/a) · 4 June 2025 · 3 chunks" in (embed.description or "")
    assert "`corpus/b.txt` · 5 chunks" in (embed.description or "")


def test_the_reply_names_what_happened() -> None:
    report = IngestReport(added=0, changed=0, unchanged=2)
    assert ingest_reply(report) == "0 added, 0 changed, 2 unchanged, 0 removed, 0 refused."
    assert upload_name("../../etc/passwd") == "passwd" and upload_name(".hidden.md") == "hidden.md"
    assert upload_name("a<b>.md") == "a_b_.md"
