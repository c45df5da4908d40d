"""citebot in a real server: thread manners, follow-ups that survive restarts, DMs, refused threads and missing
permissions, the interaction token's lifetime, votes, command sync and shutdown. Each test runs the real bot
(through `serve`) against the fake Discord of tests/fake_discord.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.discord_app import serve
from bot.discord_app.conversations import is_small_talk
from bot.discord_app.errors import BUSY, INDEX_UNAVAILABLE, RESTARTING
from bot.discord_app.logs import JsonFormatter
from bot.engine import Engine
from bot.errors import StoreError
from bot.question_log import QuestionLog
from bot.types import Answer
from tests.fake_discord import (
    CHANNEL_FORUM,
    CHANNEL_VOICE,
    CREATE_PUBLIC_THREADS,
    SEND_MESSAGES,
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeUser,
)
from tests.test_discord_e2e import (  # noqa: F401 (fixtures: `engine`, and an autouse one)
    SEOUL,
    TOKEN,
    WAIT,
    RecordingEngine,
    SlowEngine,
    StubEngine,
    bot_settings,
    button_ids,
    embed_text,
    real_engine,
    restore_discord_globals,
    running_bot,
)

pytestmark = pytest.mark.timeout(30)

US_SIDE = "who leads the U.S. side?"


def bot_messages(fake: FakeDiscord, channel_id: str) -> list[dict[str, Any]]:
    return [m for m in fake.channel_messages(channel_id) if m["author"]["id"] == fake.bot_user.id]


def replying_to(message: dict[str, Any]) -> Any:
    """A predicate: a message that replies to `message`."""
    return lambda m: (m.get("message_reference") or {}).get("message_id") == message["id"]


async def settle(fake: FakeDiscord, seconds: float = 0.3) -> None:
    """Give the bot time to (wrongly) react to something it must ignore."""
    await asyncio.sleep(seconds)


async def test_in_its_thread_the_bot_answers_the_asker_and_whoever_addresses_it(
    settings: Settings, engine: Engine
) -> None:
    recording = RecordingEngine(engine)
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, recording, fake) as run:
        bob = fake.add_user(FakeUser("bob"), fake.guild)
        question = await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}")
        thread = question["id"]
        await fake.wait_for_channel_message(thread, WAIT)
        await fake.wait_until(lambda: run.bot.get_channel(int(thread)) is not None, WAIT, "THREAD_CREATE")

        # Chatter: the asker's thanks, and two members talking to each other, get nothing.
        await fake.dispatch_message("thanks!", channel_id=thread)
        await fake.dispatch_message("did you see the summit news?", channel_id=thread, author=bob)
        await settle(fake)
        assert len(recording.calls) == 1 and len(bot_messages(fake, thread)) == 1

        # The asker's own follow-up is answered, as a reply, with the conversation so far.
        follow_up = await fake.dispatch_message(US_SIDE, channel_id=thread)
        await fake.wait_until(lambda: len(bot_messages(fake, thread)) == 2, WAIT, "the follow-up answer")
        answer = bot_messages(fake, thread)[1]
        assert answer["message_reference"]["message_id"] == follow_up["id"] and "Bessent" in embed_text(
            answer["embeds"][0]
        )
        assert [turn.question for turn in recording.calls[1][1]] == [SEOUL]

        # Anyone else: when they mention the bot, or reply to one of its answers.
        await fake.dispatch_message(f"{fake.bot_user.mention} where did they meet?", channel_id=thread, author=bob)
        await fake.wait_until(lambda: len(bot_messages(fake, thread)) == 3, WAIT, "the answer to bob's mention")
        await fake.dispatch_message("and why Seoul?", channel_id=thread, author=bob, reply_to=answer["id"])
        await fake.wait_until(lambda: len(bot_messages(fake, thread)) == 4, WAIT, "the answer to bob's reply")
        assert [turn.question for turn in recording.calls[3][1]] == [SEOUL, US_SIDE, "where did they meet?"]
        assert fake.pings == {}, "answers never notify anyone"
    assert fake.violations == []


async def test_a_mention_of_the_bots_role_counts_as_a_mention(settings: Settings, engine: Engine) -> None:
    """Picking the bot in the mention list often inserts its managed role (<@&id>), not the user."""
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake):
        asked = await fake.dispatch_message(f"<@&{fake.guild.bot_role_id}> {SEOUL}")
        answer = await fake.wait_for_channel_message(asked["id"], WAIT)
        assert "neutral staging ground" in embed_text(answer["embeds"][0])
        other_role = await fake.dispatch_message(f"<@&{fake.guild.id}> {SEOUL}")  # @everyone's role: not the bot
        await settle(fake)
        assert other_role["id"] not in fake.channels
    assert fake.violations == []


async def test_follow_ups_survive_a_restart(settings: Settings, engine: Engine) -> None:
    """The conversation is read back from the thread: a new process answers the asker's follow-up in context."""
    async with FakeDiscord(token=TOKEN) as fake:
        async with running_bot(settings, engine, fake):
            question = await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}")
            first = await fake.wait_for_channel_message(question["id"], WAIT)
        recording = RecordingEngine(engine)
        async with running_bot(settings, recording, fake) as restarted:
            thread = question["id"]
            await fake.wait_until(lambda: restarted.bot.get_channel(int(thread)) is not None, WAIT, "the thread")
            await fake.dispatch_message(US_SIDE, channel_id=thread)
            await fake.wait_until(lambda: len(bot_messages(fake, thread)) == 2, WAIT, "the follow-up answer")
            [(asked, history)] = recording.calls
            assert asked == US_SIDE and [turn.question for turn in history] == [SEOUL]
            assert "neutral staging ground" in history[0].answer and history[0].answer in embed_text(first["embeds"][0])
            assert history[0].quoted and all(doc_id for doc_id, _start in history[0].quoted)
            stored = restarted.feedback.get(button_ids(first)[0].rsplit(":", 1)[1])
            assert stored is not None and history[0].quoted == tuple(
                (c["doc_id"], c["start"]) for c in stored.citations
            )
    assert fake.violations == []


async def test_a_mention_in_someone_elses_thread_or_forum_post_is_answered_in_place(
    settings: Settings, engine: Engine
) -> None:
    forum = FakeChannel("questions", type=CHANNEL_FORUM)
    guild = FakeGuild("g", channels=[FakeChannel("general"), forum])
    async with FakeDiscord(token=TOKEN, guilds=[guild]) as fake, running_bot(settings, engine, fake) as run:
        for parent in (fake.default_channel_id, forum.id):
            thread = await fake.open_thread(parent, name="members talking", content="a forum post")
            await fake.wait_until(lambda: run.bot.get_channel(int(thread["id"])) is not None, WAIT, "the thread")  # noqa: B023
            asked = await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}", channel_id=thread["id"])
            reply = await fake.wait_for_channel_message(thread["id"], WAIT)
            assert reply["message_reference"]["message_id"] == asked["id"]
            assert asked["id"] not in fake.channels, "no thread of its own"
            await fake.dispatch_message(US_SIDE, channel_id=thread["id"])  # the thread is not taken over
            await settle(fake)
            assert len(bot_messages(fake, thread["id"])) == 1
    assert fake.violations == []


async def test_a_reply_to_an_answer_in_a_channel_is_a_follow_up_to_it(settings: Settings, engine: Engine) -> None:
    recording = RecordingEngine(engine)
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, recording, fake) as run:
        interaction, _ = await run.ask(SEOUL)
        answer_id = interaction.original_message_id
        follow_up = await fake.dispatch_message(US_SIDE, reply_to=answer_id)
        await fake.wait_until(lambda: len(recording.calls) == 2, WAIT, "the follow-up")
        reply = await fake.wait_for_channel_message(fake.default_channel_id, WAIT, replying_to(follow_up))
        asked, history = recording.calls[1]
        assert asked == US_SIDE and [turn.question for turn in history] == [SEOUL]
        assert "Bessent" in embed_text(reply["embeds"][0])
        assert follow_up["id"] not in fake.channels and fake.pings == {}
    assert fake.violations == []


async def test_direct_messages_get_a_note_unless_enabled(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        dm = fake.open_dm()
        async with running_bot(settings, engine, fake):
            await fake.dispatch_message(SEOUL, channel_id=dm["id"])
            note = await fake.wait_for_channel_message(dm["id"], WAIT)
            assert note["content"].startswith("I only answer in servers") and not note["embeds"]
            slash = await fake.dispatch_slash_command(
                "ask", {"question": SEOUL}, channel_id=dm["id"], require_synced=False
            )
            refused = await fake.wait_for_callback(slash, WAIT)
            assert refused.json["data"]["content"].startswith("I only answer in servers")
            assert refused.json["data"]["flags"] & 64
        enabled = settings.model_copy(update={"discord_dms": True})
        async with running_bot(enabled, engine, fake):
            await fake.dispatch_message(SEOUL, channel_id=dm["id"])
            answered = await fake.wait_for_channel_message(dm["id"], WAIT, lambda m: bool(m["embeds"]))
            assert "neutral staging ground" in embed_text(answered["embeds"][0])
            slash = await fake.dispatch_slash_command(
                "ask", {"question": SEOUL}, channel_id=dm["id"], require_synced=False
            )
            answer = await fake.wait_for_original_edit(slash, WAIT)
            assert "neutral staging ground" in embed_text(answer.json["embeds"][0])
    assert fake.violations == []


async def test_nudges_reach_only_the_asker(settings: Settings) -> None:
    stub = StubEngine(Answer("q", "fine", (), "answered"))
    async with (
        FakeDiscord(token=TOKEN) as fake,
        running_bot(settings, stub, fake, cooldown_seconds=30.0, nudge_seconds=0.2),
    ):
        empty = await fake.dispatch_message(fake.bot_user.mention)
        nudge = await fake.wait_for_channel_message(fake.default_channel_id, WAIT)
        assert nudge["content"].startswith("Ask me something") and replying_to(empty)(nudge)
        await fake.wait_for_request(lambda r: r.method == "DELETE" and r.path.endswith(f"/messages/{nudge['id']}"))
        assert nudge["id"] not in fake.messages and empty["id"] not in fake.channels

        first = await fake.dispatch_message(f"{fake.bot_user.mention} first")
        await fake.wait_for_channel_message(first["id"], WAIT)
        since = len(fake.requests)
        second = await fake.dispatch_message(f"{fake.bot_user.mention} second")
        deleted = f"/channels/{second['channel_id']}/messages/"
        await fake.wait_for_request(lambda r: r.method == "DELETE" and r.path.startswith(deleted), since=since)
        assert second["id"] not in fake.channels, "no thread for a refused question"
        assert not any(m["content"].startswith("Slow down") for m in bot_messages(fake, fake.default_channel_id))
    assert fake.violations == []


async def test_refused_threads_fall_back_to_a_reply_in_the_channel(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    no_threads = FakeChannel("no-threads", bot_denied=CREATE_PUBLIC_THREADS)
    voice = FakeChannel("lounge", type=CHANNEL_VOICE)
    mute = FakeChannel("announcements", bot_denied=SEND_MESSAGES | CREATE_PUBLIC_THREADS)
    guild = FakeGuild("g", channels=[FakeChannel("general"), no_threads, voice, mute])
    caplog.set_level(logging.INFO, logger="citebot")
    async with FakeDiscord(token=TOKEN, guilds=[guild]) as fake, running_bot(settings, engine, fake):
        general = fake.default_channel_id
        cases = [
            await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}", channel_id=c.id)
            for c in (no_threads, voice)
        ]
        # A message that already has a thread (another bot was quicker), and one deleted before the bot got to it.
        taken = await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}", channel_id=general)
        await fake.open_thread(general, FakeUser("otherbot", bot=True), from_message=taken["id"])
        cases.append(taken)
        gone = await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}", channel_id=general)
        await fake.delete_message(gone["id"])
        for asked in cases:
            reply = await fake.wait_for_channel_message(asked["channel_id"], WAIT, replying_to(asked))
            assert "neutral staging ground" in embed_text(reply["embeds"][0])
        await fake.wait_until(
            lambda: any(m.get("embeds") and "message_reference" not in m for m in bot_messages(fake, general)), WAIT
        )
        await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}", channel_id=mute.id)
        await fake.wait_until(lambda: any("missing the Send Messages" in r.getMessage() for r in caplog.records), WAIT)
    fallbacks = [r.getMessage() for r in caplog.records if "could not open a thread" in r.getMessage()]
    assert len(fallbacks) == 4, fallbacks  # no permission, a thread already there, a deleted message, no permission
    assert any("Missing Permissions" in f for f in fallbacks) and any("already been created" in f for f in fallbacks)
    assert any("Unknown Message" in f for f in fallbacks)
    line = next(r.getMessage() for r in caplog.records if "missing the Send Messages" in r.getMessage())
    assert f"#announcements ({mute.id})" in line
    assert not any("Ignoring exception" in r.getMessage() or r.exc_info for r in caplog.records)


async def test_a_failing_typing_indicator_never_costs_the_answer(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake):
        rule = fake.fail_next(method="POST", path=r"/channels/\d+/typing", status=403, code=50013)
        asked = await fake.dispatch_message(f"{fake.bot_user.mention} {SEOUL}")
        answer = await fake.wait_for_channel_message(asked["id"], WAIT)
        assert len(rule.hits) == 1 and "neutral staging ground" in embed_text(answer["embeds"][0])


async def test_an_unavailable_index_gets_a_polite_reply(settings: Settings) -> None:
    stub = StubEngine(error=StoreError("cannot search (Chroma server 127.0.0.1:1): connection refused"))
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, stub, fake) as run:
        _interaction, reply = await run.ask(SEOUL)
        assert reply.json["content"] == INDEX_UNAVAILABLE


async def test_work_that_cannot_start_in_time_is_refused_and_dead_tokens_are_never_called(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """With one answering slot, a 1.6 s token and 0.8 s of margin: the first question is answered, the second
    cannot start in time and is told the bot is busy; a queue over its bound is refused at once."""
    slow = SlowEngine(1.0)
    options: dict[str, Any] = {
        "max_concurrent_answers": 1,
        "max_waiting_answers": 1,
        "interaction_lifetime": timedelta(seconds=1.6),
        "start_margin": timedelta(seconds=0.8),
    }
    async with (
        FakeDiscord(token=TOKEN, interaction_token_lifetime=1.6) as fake,
        running_bot(settings, slow, fake, **options) as run,
    ):
        users = [fake.add_user(FakeUser(f"u{i}"), fake.guild) for i in range(3)]
        first = await fake.dispatch_slash_command("ask", {"question": "q0"}, user=users[0])
        await fake.wait_until(lambda: slow.running == 1, WAIT, "the first answer to start")
        second = await fake.dispatch_slash_command("ask", {"question": "q1"}, user=users[1])
        await fake.wait_until(lambda: run.bot.waiting_answers == 1, WAIT, "the second to wait")
        third = await fake.dispatch_slash_command("ask", {"question": "q2"}, user=users[2])
        refused = await fake.wait_for_callback(third, WAIT)
        assert (
            refused.json["type"] == 4 and refused.json["data"]["content"] == BUSY and refused.json["data"]["flags"] & 64
        )
        busy = await fake.wait_for_original_edit(second, WAIT)
        assert busy.json["content"] == BUSY
        answered = await fake.wait_for_original_edit(first, WAIT)
        assert "slow answer to q0" in embed_text(answered.json["embeds"][0])
    assert fake.violations == [] and slow.peak == 1


async def test_an_answer_ready_after_the_token_died_is_not_sent(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    options: dict[str, Any] = {"interaction_lifetime": timedelta(seconds=0.5), "start_margin": timedelta(0)}
    async with (
        FakeDiscord(token=TOKEN, interaction_token_lifetime=0.5) as fake,
        running_bot(settings, SlowEngine(0.8), fake, **options),
    ):
        interaction = await fake.dispatch_slash_command("ask", {"question": "slow"})
        await fake.wait_until(lambda: any("expired" in r.getMessage() for r in caplog.records), WAIT, "the log line")
        assert not fake.requests_matching("PATCH", interaction.webhook_path + ".*")
    assert fake.violations == []


async def test_votes_are_acknowledged_first_and_record_where_they_were_cast(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake) as run:
        interaction, followup = await run.ask(SEOUL)
        down = button_ids(followup.json)[1]
        message_id = interaction.original_message_id
        click = await fake.dispatch_component_click(message_id or "", down)
        ack = await fake.wait_for_callback(click, WAIT)
        assert ack.json["data"]["content"] == "Thanks for the feedback"
        path = run.settings.data_dir / "questions.sqlite3"

        def row() -> tuple[str, ...] | None:
            with sqlite3.connect(path) as db:
                try:
                    return db.execute("SELECT vote, guild_id, channel_id, message_id FROM votes").fetchone()
                except sqlite3.OperationalError:  # the question log's writer has not created its tables yet
                    return None

        await fake.wait_until(lambda: row() is not None, WAIT, "the vote")
        assert row() == ("down", fake.guild.id, fake.default_channel_id, message_id)
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _vote_many(path: str, answer_ids: list[str], voter: int, start: Any) -> None:
    start.wait()
    store = QuestionLog(Path(path))
    for n, answer_id in enumerate(answer_ids):
        assert store.record_vote(answer_id, f"{voter}-{n}", "up" if n % 2 else "down", guild_id=1, channel_id=2)


@pytest.mark.timeout(120)
def test_several_processes_voting_at_once_lose_no_vote(tmp_path: Path) -> None:
    store = QuestionLog(tmp_path / "questions.sqlite3")
    answer_ids = [store.record_answer(Answer(f"q{i}", "a", (), "answered")) for i in range(50)]
    store.close()  # written, and no writer thread left for the forked workers to inherit mid-transaction
    context = multiprocessing.get_context("fork")  # the workers only open SQLite: nothing to inherit badly
    start = context.Event()
    workers = [
        context.Process(target=_vote_many, args=(str(store.path), answer_ids, voter, start)) for voter in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(90)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM votes").fetchone() == (200,)


async def test_commands_are_synced_only_when_they_changed_and_only_by_shard_0(
    settings: Settings, engine: Engine
) -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        puts = lambda: fake.requests_matching("PUT", r"/applications/\d+/.*commands")  # noqa: E731
        async with running_bot(settings, engine, fake):
            assert len(puts()) == 1
        async with running_bot(settings, engine, fake):
            assert len(puts()) == 1, "the same commands are not synced again"
        fake.synced_commands(fake.guild.id)[0]["description"] = "an older description"
        async with running_bot(settings, engine, fake):
            assert len(puts()) == 2
        before = len(fake.requests)
        sharded = settings.model_copy(update={"discord_shard_count": 2, "discord_shard_ids": "1"})
        async with running_bot(sharded, engine, fake):
            pass
        assert not [r for r in fake.requests[before:] if "/commands" in r.path]


async def test_moving_from_global_to_guild_commands_leaves_one_ask(settings: Settings, engine: Engine) -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        global_settings = settings.model_copy(update={"discord_guild_id": None})
        run_settings = bot_settings(global_settings, fake).model_copy(update={"discord_guild_id": None})
        task = asyncio.create_task(serve(run_settings, engine, QuestionLog.for_settings(run_settings), reconnect=False))
        await fake.wait_until(lambda: bool(fake.synced_commands(None)), WAIT, "the global sync")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, WAIT) == 0
        async with running_bot(settings, engine, fake):
            assert fake.synced_commands(None) == []
            assert [c["name"] for c in fake.synced_commands(fake.guild.id)].count("ask") == 1


async def test_a_guild_the_bot_is_not_in_is_one_line(
    settings: Settings, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        fake.foreign_guilds.add("123456789012345678")  # a server that exists, without the bot in it
        wrong = bot_settings(settings, fake).model_copy(update={"discord_guild_id": 123456789012345678})
        assert await serve(wrong, engine, QuestionLog.for_settings(wrong)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CITEBOT_DISCORD_GUILD_ID=123456789012345678" in err and "403" in err


async def test_sigterm_lets_answers_in_progress_finish(settings: Settings) -> None:
    slow = SlowEngine(0.5)
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, slow, fake) as run:
        interaction = await fake.dispatch_slash_command("ask", {"question": "almost done"})
        await fake.wait_until(lambda: slow.running == 1, WAIT, "the answer to start")
        os.kill(os.getpid(), signal.SIGTERM)
        late = await fake.dispatch_slash_command("ask", {"question": "too late"}, user=fake.add_user(FakeUser("b")))
        refused = await fake.wait_for_callback(late, WAIT)
        assert refused.json["data"]["content"] == RESTARTING and refused.json["data"]["flags"] & 64
        answer = await fake.wait_for_original_edit(interaction, WAIT)
        assert "slow answer to almost done" in embed_text(answer.json["embeds"][0])
        assert run.task is not None and await asyncio.wait_for(run.task, WAIT) == 0
        assert fake.connections[-1].close_code == 1000


async def test_sigterm_ends_answers_that_cannot_finish_politely(settings: Settings) -> None:
    slow = SlowEngine(3.0)
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, slow, fake, shutdown_grace=0.2) as run:
        interaction = await fake.dispatch_slash_command("ask", {"question": "a long one"})
        await fake.wait_until(lambda: slow.running == 1, WAIT, "the answer to start")
        started = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
        ended = await fake.wait_for_original_edit(interaction, WAIT)
        assert ended.json["content"] == RESTARTING
        assert run.task is not None and await asyncio.wait_for(run.task, WAIT) == 0
        assert time.monotonic() - started < 2.0


def test_small_talk_is_not_a_question() -> None:
    assert all(is_small_talk(text) for text in ["thanks!", "Thank you so much", "ok cool", "👍", "", "got it, thx"])
    assert not any(is_small_talk(text) for text in ["thanks, and why Seoul?", "who leads it", "ok?"])


def test_the_json_log_line_carries_the_fields() -> None:
    record = logging.LogRecord("citebot.discord", logging.INFO, "", 0, "answered %s", ("x",), None)
    record.support, record.citations = "answered", 2  # type: ignore[attr-defined]
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "answered x" and data["support"] == "answered" and data["citations"] == 2
