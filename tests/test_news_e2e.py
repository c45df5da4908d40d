"""The whole story: a feed, `citebot discord --watch` left running, and a question on Discord about an article
published after it started, answered with the article's date. Everything is real except Discord (the fake on
127.0.0.1) and the news site (tests/web_site.py); the embedder is the hashing one, so the process starts fast."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.discord_app import main
from tests.conftest import VENV_BIN, citebot, cli_env
from tests.fake_discord import FakeDiscord, FakeInteraction
from tests.test_discord_e2e import TOKEN, embed_text
from tests.web_site import RSS, Site, article_page, rss_feed

pytestmark = pytest.mark.timeout(120)

WAIT = 60.0
FIRST = ("Harbour dues rise by five per cent", "/news/harbour-dues.html", "2025-06-01T08:00:00Z")
BREAKING = ("Lantern festival moves to the quay", "/news/lanterns.html", "2025-06-02T18:45:00Z")


class Bot:
    """`citebot discord --watch` in a subprocess; its stderr lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    async def wait_for(self, matches: Callable[[str], bool], what: str) -> str:
        """The first line of the bot's output that `matches`."""

        async def find() -> str:
            while True:
                found = next((line for line in self.lines if matches(line)), None)
                if found is not None:
                    return found
                if self.process.returncode is not None:
                    raise AssertionError(f"the bot exited ({self.process.returncode}): {self.lines[-5:]}")
                await asyncio.sleep(0.05)

        try:
            return await asyncio.wait_for(find(), WAIT)
        except TimeoutError:
            raise AssertionError(f"no {what} in the bot's output: {self.lines[-10:]}") from None


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, site: Site, settings: Settings, cwd: Path) -> AsyncIterator[Bot]:
    env = cli_env(
        settings,
        **fake.bot_env(),
        CITEBOT_ALLOW_PRIVATE_URLS="true",
    )
    process = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "citebot"), "discord", "--watch", cwd=cwd, env=env, stderr=asyncio.subprocess.PIPE
    )
    bot = Bot(process)
    try:
        yield bot
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def ask(fake: FakeDiscord, question: str) -> str:
    interaction: FakeInteraction = await fake.dispatch_slash_command("ask", {"question": question})
    answer = await fake.wait_for_original_edit(interaction, WAIT)  # the "thinking…" message becomes the answer
    return "\n".join(embed_text(embed) for embed in answer.json["embeds"])


async def test_ask_discord_about_an_article_published_after_the_bot_started(settings: Settings, tmp_path: Path):
    with Site() as site:
        for title, path, published in (FIRST, BREAKING):
            site.put(path, article_page(title, [f"{title}, the harbour master said on Monday."], published=published))
        site.put("/feed.xml", rss_feed(site, [FIRST]), RSS)
        (tmp_path / "sources.toml").write_text(f'[[source]]\nfeed = "{site.url("/feed.xml")}"\nevery = "1s"\n')
        async with FakeDiscord(token=TOKEN) as fake, running(fake, site, settings, tmp_path) as bot:
            first = await bot.wait_for(lambda line: "watch: cycle 1 " in line, "first cycle")
            assert "watch: cycle 1 (1 source): 1 added" in first
            await fake.wait_until(lambda: fake.find_command("ingest", fake.guild.id) is not None, WAIT, "commands")

            site.put("/feed.xml", rss_feed(site, [FIRST, BREAKING]), RSS)  # just published, on the site
            await bot.wait_for(
                lambda line: "watch: cycle " in line and " 1 added" in line and "cycle 1 " not in line,
                "cycle that adds the new article",
            )
            await asyncio.sleep(1.1)  # the engine checks for new documents at most once a second
            text = await ask(fake, "Where is the lantern festival moving to?")
            assert "Lantern festival moves to the quay" in text
            assert "2 June 2025" in text, "the citation carries the article's date"
            assert site.url("/news/lanterns.html") + "#:~:text=" in text
    assert fake.violations == []


def test_watching_needs_a_source_list(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    watching = settings.model_copy(
        update={"discord_token": SecretStr(TOKEN), "watch": True, "sources_file": tmp_path / "sources.toml"}
    )
    assert main(watching) == 2
    assert capsys.readouterr().err == (
        f"citebot: no source list at {tmp_path / 'sources.toml'}; create it (see README, section Sources) or set "
        "CITEBOT_SOURCES\n"
    )


def test_make_run_without_a_token_says_the_watcher_needs_the_bot(settings: Settings, tmp_path: Path) -> None:
    result = citebot("run", env=cli_env(settings, CITEBOT_WATCH="true"), cwd=tmp_path, stdin="")
    assert "citebot: CITEBOT_WATCH runs with the bot only; run `citebot watch` in another terminal" in result.stderr
    assert result.returncode == 0, result.stderr
