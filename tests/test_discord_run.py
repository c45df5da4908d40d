"""`citebot discord` as operators run it: start-up and answer log lines, JSON logs, SIGTERM, and a Discord that
cannot be reached."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.config import Settings
from bot.discord_app import serve
from bot.question_log import QuestionLog
from bot.types import Answer, DocumentRecord, Turn
from ingest.pipeline import IngestPipeline
from tests.conftest import VENV_BIN, cli_env, free_port
from tests.fake_discord import FakeDiscord
from tests.test_discord_e2e import TOKEN, WAIT, bot_settings, restore_discord_globals  # noqa: F401

pytestmark = pytest.mark.timeout(60)

# The hashing embedder of the tests matches words, not meaning: a question in the article's own words is answered.
VERBATIM = "Who will lead China's delegation in Seoul on May 12-13?"


class ColdEngine:
    """An engine that must not be warmed up: `serve` has to fail before loading the model."""

    def __init__(self) -> None:
        self.warmed = False

    def ask(self, question: str, history: Sequence[Turn] = (), k: int | None = None) -> Answer:
        raise AssertionError("no question can arrive")

    def warm_up(self) -> None:
        self.warmed = True

    def documents(self) -> list[DocumentRecord]:
        return []


async def start_bot(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """`citebot discord` as a user starts it, its output piped."""
    return await asyncio.create_subprocess_exec(
        str(VENV_BIN / "citebot"),
        "discord",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_citebot_discord_logs_json_answers_and_stops_on_sigterm(
    settings: Settings, corpus: Path, tmp_path: Path
) -> None:
    from bot.engine import Engine

    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    async with FakeDiscord(token=TOKEN) as fake:
        env = cli_env(
            settings,
            **fake.bot_env(),
            CITEBOT_LOG_FORMAT="json",
        )
        process = await start_bot(env, tmp_path)
        try:
            await fake.wait_for_session(timeout=45)
            await fake.wait_until(lambda: bool(fake.synced_commands(fake.guild.id)), WAIT, "the command sync")
            interaction = await fake.dispatch_slash_command("ask", {"question": VERBATIM})
            await fake.wait_for_original_edit(interaction, WAIT)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0
            assert time.monotonic() - started < 10
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.stderr is not None
        stderr = (await process.stderr.read()).decode()
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON
    messages = [line["message"] for line in lines]
    ready = next(m for m in messages if m.startswith("ready to answer"))
    assert "2 documents" in ready and "answerer: extractive" in ready
    assert "https://discord.com/oauth2/authorize?client_id=" in ready and "applications.commands" in ready
    [answered] = [line for line in lines if line.get("event") == "answer"]
    assert answered["guild"] == int(fake.guild.id) and answered["shard"] == 0 and answered["support"] != "none"
    assert answered["citations"] >= 1 and 0 <= answered["confidence"] <= 1 and "question" not in answered
    assert not any("PyNaCl" in m or "davey" in m for m in messages), "no voice warnings for a text-only bot"
    assert TOKEN not in stderr
    assert any("shutting down" in m for m in messages)


async def test_questions_are_logged_only_when_asked_for(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_discord_e2e import StubEngine, running_bot

    caplog.set_level("INFO", logger="citebot")
    stub = StubEngine(Answer("a secret question", "fine [1]", (), "answered", 0.5))
    async with FakeDiscord(token=TOKEN) as fake:
        async with running_bot(settings, stub, fake) as run:
            await run.ask("a secret question")
        logged = settings.model_copy(update={"log_questions": True})
        async with running_bot(logged, stub, fake) as run:
            await run.ask("a secret question")
    lines = [r for r in caplog.records if getattr(r, "event", None) == "answer"]
    assert len(lines) == 2 and not hasattr(lines[0], "question") and lines[1].question == "a secret question"  # type: ignore[attr-defined]
    assert "secret" not in lines[0].getMessage() and 'support="answered"' in lines[0].getMessage()


@pytest.mark.parametrize("where", ["refused", "tls", "dns"])
async def test_an_unreachable_discord_is_one_line_before_the_model_loads(
    settings: Settings, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        base = {
            "refused": f"http://127.0.0.1:{free_port()}/api/v10",
            "tls": f"https://127.0.0.1:{fake.port}/api/v10",  # the fake speaks plain HTTP: the handshake fails
            "dns": "http://discord.invalid/api/v10",  # .invalid never resolves (RFC 2606)
        }[where]
        unreachable = bot_settings(settings, fake).model_copy(update={"discord_api_base": base})
        engine = ColdEngine()
        started = time.monotonic()
        status = await serve(unreachable, engine, QuestionLog.for_settings(unreachable))
    err = capsys.readouterr().err
    assert status == 1 and not engine.warmed and time.monotonic() - started < 15
    assert err.count("\n") == 1 and err.startswith(f"citebot: cannot reach Discord at {base}")
    assert "CITEBOT_DISCORD_API_BASE" in err and "proxy" in err and "Traceback" not in err


@pytest.mark.parametrize(("known", "status"), [(False, "404 Unknown Guild"), (True, "403 Missing Access")])
async def test_a_server_id_the_bot_is_not_in_is_one_line_and_exit_2(
    settings: Settings, corpus: Path, tmp_path: Path, known: bool, status: str
) -> None:
    """CITEBOT_DISCORD_GUILD_ID of a server that does not exist (404 Unknown Guild) or that the bot is not in (403
    Missing Access): `citebot discord` says which setting and what to do, in one line, and exits 2."""
    from bot.engine import Engine

    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    async with FakeDiscord(token=TOKEN) as fake:
        if known:
            fake.foreign_guilds.add("987654321098765432")
        env = cli_env(settings, **{**fake.bot_env(), "CITEBOT_DISCORD_GUILD_ID": "987654321098765432"})
        process = await start_bot(env, tmp_path)
        _, err = await asyncio.wait_for(process.communicate(), 50)
    problems = [line for line in err.decode().splitlines() if line.startswith("citebot:")]
    assert process.returncode == 2, err.decode()
    assert "Traceback" not in err.decode()
    assert len(problems) == 1 and "CITEBOT_DISCORD_GUILD_ID=987654321098765432" in problems[0]
    assert status in problems[0] and "invite the bot to that server" in problems[0]
