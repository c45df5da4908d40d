"""End-to-end tests of citebot's Discord adapter: the real discord.py client, our real bot code (started through
`bot.discord_app.serve`, the code path of `main`), the real engine over the seed corpus (hashing embedder), and
the fake Discord of tests/fake_discord.py on 127.0.0.1.

Why end to end: the failure modes that matter on Discord (late acknowledgement, limits, rate limits, blocked
heartbeats, refused intents, pings) only show up between a real client and a server that enforces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import discord
import discord.gateway
import discord.http
import discord.utils
import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.discord_app import MISSING_TOKEN, NO_MESSAGE_CONTENT, REJECTED_TOKEN, CitebotBot, main, serve
from bot.discord_app.errors import GENERIC_FAILURE
from bot.engine import Engine
from bot.question_log import QuestionLog, export_command
from bot.types import Answer, Citation, DocumentRecord, Turn
from ingest.pipeline import IngestPipeline
from tests.fake_discord import FakeChannel, FakeDiscord, FakeGuild, FakeInteraction, FakeUser, RecordedRequest

pytestmark = pytest.mark.timeout(20)

TOKEN = "fake-bot-token.Secret_123"
WAIT = 10.0
SEOUL = "why Seoul and not Beijing?"
SEOUL_FILE = "china-sends-he-lifeng-to-seoul.txt"


@pytest.fixture(autouse=True)
def restore_discord_globals() -> Iterator[None]:
    """serve() points discord.py's globals at the fake; put them back whatever the test did."""
    base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


class RecordingEngine:
    """Wraps the engine (or a stub) to record what the bot asked, and with which history."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, list[Turn]]] = []

    def ask(self, question: str, history: Sequence[Turn] = (), k: int | None = None) -> Answer:
        self.calls.append((question, list(history)))
        return self.inner.ask(question, history, k)

    def warm_up(self) -> None:
        self.inner.warm_up()

    def documents(self) -> list[DocumentRecord]:
        return self.inner.documents()


class SlowEngine:
    """Sleeps in ask like a real model would (blocking), and records how many asks ran at once."""

    def __init__(self, delay: float = 0.3) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.on_loop_thread: list[bool] = []

    def ask(self, question: str, history: Sequence[Turn] = (), k: int | None = None) -> Answer:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.on_loop_thread.append(threading.current_thread() is threading.main_thread())
            time.sleep(self.delay)
            return Answer(question, f"slow answer to {question} [1]", (_citation(1, "q"),), "answered")
        finally:
            with self.lock:
                self.running -= 1

    def warm_up(self) -> None:
        pass

    def documents(self) -> list[DocumentRecord]:
        return []


class StubEngine:
    """Returns a fixed answer, or raises a fixed error."""

    def __init__(self, answer: Answer | None = None, error: Exception | None = None) -> None:
        self.answer, self.error = answer, error

    def ask(self, question: str, history: Sequence[Turn] = (), k: int | None = None) -> Answer:
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer

    def warm_up(self) -> None:
        pass

    def documents(self) -> list[DocumentRecord]:
        return []


def _citation(n: int, quote: str, title: str = "Title", source: str = "corpus/x.txt") -> Citation:
    return Citation(n=n, source=source, title=title, start=0, end=len(quote), quote=quote, score=1.0)


@pytest.fixture(name="engine")
def real_engine(settings: Settings, corpus: Path) -> Engine:
    """The real engine over a copy of the seed corpus, with the hashing embedder."""
    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    return engine


def bot_settings(settings: Settings, fake: FakeDiscord, token: str = TOKEN, **changes: Any) -> Settings:
    update: dict[str, Any] = {
        "discord_token": SecretStr(token),
        "discord_api_base": fake.api_base,
        "discord_gateway_url": fake.gateway_url,
        "discord_guild_id": int(fake.guild.id),
        **changes,
    }
    return settings.model_copy(update=update)


def make_test_bot(created: list[CitebotBot]) -> type[CitebotBot]:
    """CitebotBot as in production, except the 5 s pause discord.py takes before a re-IDENTIFY."""

    class TestBot(CitebotBot):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            created.append(self)

        async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
            return None

    return TestBot


class Running:
    """A bot started through `serve`, plus what the test needs to look at."""

    def __init__(self, fake: FakeDiscord, settings: Settings, feedback: QuestionLog) -> None:
        self.fake = fake
        self.settings = settings
        self.feedback = feedback
        self.bots: list[CitebotBot] = []
        self.task: asyncio.Task[int] | None = None

    @property
    def bot(self) -> CitebotBot:
        return self.bots[-1]

    async def ask(self, question: str, user: FakeUser | None = None) -> tuple[FakeInteraction, RecordedRequest]:
        interaction = await self.fake.dispatch_slash_command("ask", {"question": question}, user=user)
        callback = await self.fake.wait_for_callback(interaction, WAIT)
        assert callback.json["type"] == 5 and callback.status == 200, "the bot must defer at once"
        answer = await self.fake.wait_for_original_edit(interaction, WAIT)
        original = self.fake.messages[interaction.original_message_id or ""]
        assert not original["flags"] & 128, "the thinking message was filled in"
        return interaction, answer


@contextlib.asynccontextmanager
async def running_bot(
    settings: Settings, engine: Any, fake: FakeDiscord, *, token: str = TOKEN, **options: Any
) -> AsyncIterator[Running]:
    """Run `serve` (warm-up, routing, 4014 restart) with a TestBot until the latest bot is ready."""
    settings = bot_settings(settings, fake, token)
    run = Running(fake, settings, QuestionLog.for_settings(settings))
    options.setdefault("guild_ready_timeout", 0.1)
    options.setdefault("cooldown_seconds", 0.0)
    run.task = asyncio.create_task(serve(settings, engine, run.feedback, bot_class=make_test_bot(run.bots), **options))
    deadline = time.monotonic() + WAIT
    try:
        while not (run.bots and run.bots[-1].is_ready()):
            if run.task.done():
                raise AssertionError(f"serve() ended before the bot was ready: {run.task.result()}")
            assert time.monotonic() < deadline, "the bot was not ready in time"
            await asyncio.sleep(0.02)
        yield run
    finally:
        for bot in run.bots:
            if not bot.is_closed():
                await bot.close()
        assert await asyncio.wait_for(run.task, WAIT) == 0


def embed_of(request: RecordedRequest) -> dict[str, Any]:
    embeds = request.json["embeds"]
    assert len(embeds) == 1
    return embeds[0]


def embed_text(embed: dict[str, Any]) -> str:
    parts = [embed.get("title", ""), embed.get("description", ""), embed.get("footer", {}).get("text", "")]
    parts += [f"{field['name']}\n{field['value']}" for field in embed.get("fields", [])]
    return "\n".join(parts)


def button_ids(request_body: dict[str, Any]) -> list[str]:
    return [button["custom_id"] for row in request_body.get("components", []) for button in row["components"]]


# ------------------------------------------------------------------------------------------------------ tests


async def test_startup_syncs_the_commands_to_the_guild(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake) as run:
        assert sorted(c["name"] for c in fake.synced_commands(fake.guild.id)) == ["ask", "help", "sources"]
        assert fake.synced_commands(None) == []
        ask = fake.find_command("ask", fake.guild.id)
        assert ask is not None and ask["options"][0]["name"] == "question"
        assert run.bot.message_content and run.bot.intents.message_content
        assert run.bot.allowed_mentions is not None and run.bot.allowed_mentions.to_dict() == {"parse": []}

        # Sharded clients connect where GET /gateway/bot says; CITEBOT_DISCORD_GATEWAY_URL must win over it.
        custom = run.settings.model_copy(update={"discord_gateway_url": "ws://127.0.0.1:1/elsewhere"})
        other = CitebotBot(engine=engine, settings=custom, feedback=run.feedback)
        await other.http.static_login(TOKEN)
        try:
            shards, url, _limits = await other.http.get_bot_gateway()
        finally:
            await other.http.close()
        assert (shards, url) == (1, "ws://127.0.0.1:1/elsewhere")
    assert fake.violations == [] and fake.unknown_requests == []


async def test_ask_is_deferred_then_answered_with_citations(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake) as run:
        _interaction, followup = await run.ask(SEOUL)
        embed = embed_of(followup)
        assert "neutral staging ground" in embed_text(embed)
        assert embed["fields"] and any(SEOUL_FILE in field["value"] for field in embed["fields"])
        assert all(field["name"].startswith("[") for field in embed["fields"])
        assert followup.json["allowed_mentions"] == {"parse": []}
        ids = button_ids(followup.json)
        assert [i.split(":")[2] for i in ids] == ["up", "down"] and all(i.startswith("citebot:fb:") for i in ids)
    assert fake.violations == [] and fake.unknown_requests == []


async def test_mention_opens_a_thread_and_follow_ups_use_the_conversation(settings: Settings, engine: Engine) -> None:
    recording = RecordingEngine(engine)
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, recording, fake) as run:
        question = await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}")
        first = await fake.wait_for_channel_message(question["id"], WAIT)
        thread = fake.channels[question["id"]]
        assert thread["name"] == SEOUL and thread["type"] == 11
        assert "neutral staging ground" in embed_text(first["embeds"][0])
        await fake.wait_until(lambda: run.bot.get_channel(int(thread["id"])) is not None, WAIT, "THREAD_CREATE")

        await fake.dispatch_message("who leads the U.S. side?", channel_id=thread["id"])

        def bot_messages() -> list[dict[str, Any]]:
            return [m for m in fake.channel_messages(thread["id"]) if m["author"]["id"] == fake.bot_user.id]

        await fake.wait_until(lambda: len(bot_messages()) == 2, WAIT, "the follow-up answer")
        answers = bot_messages()
        assert len(answers) == 2 and "Bessent" in embed_text(answers[1]["embeds"][0])
        assert recording.calls[0] == (SEOUL, [])
        follow_question, history = recording.calls[1]
        assert follow_question == "who leads the U.S. side?"
        assert [turn.question for turn in history] == [SEOUL] and "neutral staging ground" in history[0].answer

        # Plain messages outside the bot's threads, and the bot's own echoed messages, are ignored.
        await fake.dispatch_message("just chatting")
        await asyncio.sleep(0.3)
        assert len(recording.calls) == 2
    assert fake.violations == [] and fake.unknown_requests == []


async def test_the_bot_answers_only_in_the_allowed_channels(settings: Settings, engine: Engine) -> None:
    guild = FakeGuild("citebot-test", channels=[FakeChannel("general"), FakeChannel("quiet")])
    async with FakeDiscord(token=TOKEN, guilds=[guild]) as fake:
        general, quiet = guild.channel("general").id, guild.channel("quiet").id
        only_general = settings.model_copy(update={"discord_channels": str(general)})
        async with running_bot(only_general, engine, fake):
            ignored = await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}", channel_id=quiet)
            refused = await fake.dispatch_slash_command("ask", {"question": SEOUL}, channel_id=quiet)
            callback = await fake.wait_for_callback(refused, WAIT)
            assert callback.json["type"] == 4 and callback.json["data"]["flags"] & 64  # an ephemeral refusal
            assert f"<#{general}>" in callback.json["data"]["content"]
            answered = await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}", channel_id=general)
            reply = await fake.wait_for_channel_message(answered["id"], WAIT)
            assert "neutral staging ground" in embed_text(reply["embeds"][0])
            assert ignored["id"] not in fake.channels  # no thread was opened in the quiet channel
    assert fake.violations == []


async def test_vote_is_stored_and_exported(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake) as run:
        _interaction, followup = await run.ask(SEOUL)
        up, down = button_ids(followup.json)
        answer_id = up.rsplit(":", 1)[1]
        message_id = followup.response["id"]

        def votes() -> tuple[int, int]:
            stored = run.feedback.get(answer_id)
            return (stored.up, stored.down) if stored is not None else (-1, -1)

        click = await fake.dispatch_component_click(message_id, down)
        reply = await fake.wait_for_callback(click, WAIT)
        await fake.wait_until(lambda: votes() == (0, 1), WAIT, "the 👎 to be stored")
        click = await fake.dispatch_component_click(message_id, up)  # the same user changes their mind
        reply = await fake.wait_for_callback(click, WAIT)
        assert reply.json["type"] == 4 and reply.json["data"]["content"] == "Thanks for the feedback"
        assert reply.json["data"]["flags"] & 64, "the thanks is ephemeral"
        await fake.wait_until(lambda: votes() == (1, 0), WAIT, "the 👍 to replace it")

        stored = run.feedback.get(answer_id)
        assert stored is not None and stored.question == SEOUL
        assert any("neutral staging ground" in quote for quote in stored.quotes)
        assert (run.settings.data_dir / "questions.sqlite3").is_file()

        output = io.StringIO()
        assert export_command(run.settings, output, votes="up") == 0
        lines = [json.loads(line) for line in output.getvalue().splitlines()]
        assert len(lines) == 1 and lines[0]["q"] == SEOUL and lines[0]["kind"] == "feedback-up"
        assert any("neutral staging ground" in quote for quote in lines[0]["evidence"])
    assert fake.violations == []


async def test_vote_buttons_still_work_after_a_restart(settings: Settings, engine: Engine) -> None:
    """The buttons are DynamicItems: a new process with no memory of the answer still records the click."""
    async with FakeDiscord(token=TOKEN) as fake:
        async with running_bot(settings, engine, fake) as run:
            _interaction, followup = await run.ask(SEOUL)
        async with running_bot(settings, engine, fake) as restarted:
            down = button_ids(followup.json)[1]
            click = await fake.dispatch_component_click(followup.response["id"], down)
            reply = await fake.wait_for_callback(click, WAIT)
            assert reply.json["data"]["content"] == "Thanks for the feedback"

            def stored() -> Any:
                return restarted.feedback.get(down.rsplit(":", 1)[1])

            await fake.wait_until(lambda: stored() is not None and (stored().up, stored().down) == (0, 1), WAIT)
    assert fake.violations == []


async def test_over_long_answer_is_shortened_and_accepted(settings: Settings) -> None:
    huge = Answer(
        question="q" * 500,
        text="word " * 3000,
        citations=tuple(_citation(n, "quote " * 400, title="t" * 400, source="s" * 500) for n in range(1, 41)),
        support="answered",
        note="note " * 1000,
    )
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, StubEngine(huge), fake) as run:
        _interaction, followup = await run.ask("long?")
        embed = embed_of(followup)
        assert followup.status == 200
        shown, more = embed["fields"][:-1], embed["fields"][-1]
        assert more["name"] == "More citations" and more["value"] == f"+{40 - len(shown)} more not shown"
        assert shown and all(field["name"].startswith(f"[{n}] ") for n, field in enumerate(shown, start=1))
        assert embed["description"].endswith("…")
    assert fake.violations == []


async def test_everyone_in_a_question_does_not_ping(settings: Settings, engine: Engine) -> None:
    question = f"@everyone @here {SEOUL}"
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake) as run:
        _interaction, followup = await run.ask(question)
        assert followup.json["allowed_mentions"] == {"parse": []}
        assert "@everyone" not in embed_text(embed_of(followup)), "mentions are neutralised in the text too"

        message = await fake.dispatch_message(f"{fake.bot_user.mention} {question}")
        await fake.wait_for_channel_message(message["id"], WAIT)
        posted = fake.requests_matching("POST", rf"/channels/{message['id']}/messages")
        assert posted and all(r.json["allowed_mentions"] == {"parse": []} for r in posted)
    assert fake.violations == []


async def test_rate_limited_followup_is_retried(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake) as run:
        rule = fake.rate_limit(1, method="PATCH", path=r"/webhooks/\d+/[^/]+/messages/@original", retry_after=0.3)
        interaction, followup = await run.ask(SEOUL)
        attempts = fake.requests_matching("PATCH", interaction.webhook_path + "/messages/@original")
        assert [r.status for r in attempts] == [429, 200] and len(rule.hits) == 1
        assert "neutral staging ground" in embed_text(embed_of(followup))


async def test_twenty_questions_at_once_keep_the_heartbeat_going(settings: Settings) -> None:
    slow = SlowEngine(0.3)
    async with (
        FakeDiscord(token=TOKEN, heartbeat_interval_ms=100) as fake,
        running_bot(settings, slow, fake, cooldown_seconds=3.0) as run,
    ):
        users = [fake.add_user(FakeUser(f"user{i}"), fake.guild) for i in range(20)]
        acks_before = fake.heartbeat_acks
        started = time.monotonic()
        interactions = await asyncio.gather(
            *(fake.dispatch_slash_command("ask", {"question": f"q{i}"}, user=user) for i, user in enumerate(users))
        )
        followups = await asyncio.gather(*(fake.wait_for_original_edit(i, 15.0) for i in interactions))
        elapsed = time.monotonic() - started
        acks_during = fake.heartbeat_acks - acks_before

        assert all(i.response_type == 5 for i in interactions), "every question was deferred in time"
        assert sorted(embed_of(f)["description"] for f in followups) == sorted(
            f"slow answer to q{i} \\[1\\]" for i in range(20)
        ) or all("slow answer to" in embed_of(f)["description"] for f in followups)
        assert slow.peak <= 4 and not any(slow.on_loop_thread), "bounded, and never on the event loop thread"
        assert elapsed >= 20 * 0.3 / 4 * 0.9
        assert acks_during >= 5, f"only {acks_during} heartbeat ACKs in {elapsed:.1f}s: the gateway was blocked"
        assert run.bot.latency < 1.0
    assert fake.violations == []


async def test_reconnect_resumes_and_keeps_answering(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake) as run:
        session = await fake.wait_for_session()
        await fake.send_reconnect()
        await fake.wait_for_gateway(lambda f: f.direction == "sent" and f.t == "RESUMED", WAIT)
        assert session.resumes == 1 and len(run.bots) == 1
        _interaction, followup = await run.ask(SEOUL)
        assert "neutral staging ground" in embed_text(embed_of(followup))


async def test_refused_message_content_intent_restarts_without_it(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="citebot")
    async with (
        FakeDiscord(token=TOKEN, enabled_privileged_intents=0) as fake,
        running_bot(settings, engine, fake) as run,
    ):
        assert len(run.bots) == 2 and run.bots[0].message_content and not run.bot.message_content
        assert not run.bot.intents.message_content
        assert fake.connections[0].close_code == 4014
        _interaction, followup = await run.ask(SEOUL)
        assert "neutral staging ground" in embed_text(embed_of(followup))
    explanations = [r for r in caplog.records if r.getMessage() == NO_MESSAGE_CONTENT]
    assert len(explanations) == 1 and "Privileged Gateway Intents" in explanations[0].getMessage()


async def test_cooldown_question_error_and_failure_get_polite_replies(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    answer = Answer("q", "fine", (), "answered")
    stub = StubEngine(answer)
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, stub, fake, cooldown_seconds=30.0) as run:
        await run.ask("first")
        second = await fake.dispatch_slash_command("ask", {"question": "second"})
        refused = await fake.wait_for_callback(second, WAIT)
        assert refused.json["type"] == 4 and refused.json["data"]["flags"] & 64
        assert refused.json["data"]["content"].startswith("Slow down a little")

        stub.error = RuntimeError("boom")
        other = fake.add_user(FakeUser("bob"), fake.guild)
        _i, failed = await run.ask("anything", user=other)
        assert failed.json["content"] == GENERIC_FAILURE and failed.json["embeds"] == []
        message = await fake.dispatch_message(f"{fake.bot_user.mention} anything", author=other)
        in_thread = await fake.wait_for_channel_message(message["id"], WAIT)
        assert in_thread["content"] == GENERIC_FAILURE
    failures = [r for r in caplog.records if r.name == "citebot.discord" and r.exc_info]
    assert len(failures) == 2 and all("boom" in r.getMessage() for r in failures)
    assert fake.violations == []


async def test_over_long_questions_never_reach_the_bot_and_bad_ones_are_edited_in_politely(
    settings: Settings, engine: Engine
) -> None:
    """The length limit is the command's own (Discord's client enforces it, so nothing is deferred in public);
    a question the engine still refuses gets its reason edited into the "thinking" message."""
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake) as run:
        option = fake.find_command("ask", fake.guild.id)["options"][0]  # type: ignore[index]
        assert (option["min_length"], option["max_length"]) == (1, 1000)
        with pytest.raises(ValueError, match="max_length"):
            await fake.dispatch_slash_command("ask", {"question": "why " * 300})
        interaction, reply = await run.ask("   ")
        assert reply.json["content"].startswith("I can't answer that: the question is empty")
        assert interaction.followup_ids == [] and len(fake.channel_messages(fake.default_channel_id)) == 1


async def test_sources_and_help(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake):
        sources = await fake.dispatch_slash_command("sources")
        reply = await fake.wait_for_followup(sources, WAIT)
        text = "\n".join(embed_text(e) for e in reply.json["embeds"])
        assert SEOUL_FILE in text and "bessent-meets-he-lifeng-in-davos.txt" in text and "chunks" in text

        help_ = await fake.dispatch_slash_command("help")
        reply = await fake.wait_for_callback(help_, WAIT)
        assert reply.json["type"] == 4 and "/ask" in embed_text(reply.json["data"]["embeds"][0])
    assert fake.violations == []


def test_shard_settings_reach_the_client(settings: Settings) -> None:
    sharded = settings.model_copy(update={"discord_shard_count": 4, "discord_shard_ids": "1,3"})
    bot = CitebotBot(engine=StubEngine(), settings=sharded, feedback=QuestionLog.for_settings(settings))
    assert bot.shard_count == 4 and bot.shard_ids == [1, 3]


def test_shard_ids_without_a_count_return_2(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    broken = settings.model_copy(update={"discord_token": SecretStr(TOKEN), "discord_shard_ids": "1"})
    assert main(broken) == 2
    assert "CITEBOT_DISCORD_SHARD_COUNT" in capsys.readouterr().err


def test_missing_token_returns_2_with_one_line(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(settings) == 2
    captured = capsys.readouterr()
    assert captured.err == MISSING_TOKEN + "\n" and captured.out == ""


async def test_rejected_token_returns_1_without_leaking_it(
    settings: Settings, corpus: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token.ShouldNeverBeLogged_42"
    async with FakeDiscord(token=TOKEN) as fake:
        code = await asyncio.to_thread(main, bot_settings(settings, fake, token=wrong))  # main runs its own loop
        logging.getLogger("discord.http").warning("token in a log line: %s", wrong)
    assert code == 1
    captured = capsys.readouterr()
    assert REJECTED_TOKEN + "\n" in captured.err and captured.err.count("\n") == 1
    assert wrong not in captured.err + captured.out
    assert all(wrong not in caplog.handler.format(record) for record in caplog.records)
    assert any("[redacted]" in record.getMessage() for record in caplog.records)
    assert fake.requests[0].path == "/users/@me" and fake.requests[0].status == 401
