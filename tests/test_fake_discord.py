"""Proves that tests/fake_discord.py is faithful enough to drive a real discord.py client end to end.

Why: the bot's own end-to-end tests trust this fake; if the fake's gateway, interaction or limit handling were
wrong they would pass against a Discord that does not exist. Each test here starts a fake on 127.0.0.1 and a
minimal discord.py client defined below, and checks one behaviour the bot relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import discord.utils
import pytest
from discord.ext import commands

from tests.fake_discord import (
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeUser,
    point_discord_at,
    run_client,
    snowflake,
    snowflake_time,
    validate_message_body,
)

pytestmark = pytest.mark.timeout(30)

TOKEN = "fake-bot-token"
WAIT = 10.0


@pytest.fixture(autouse=True)
def restore_discord_globals() -> Iterator[None]:
    """Whatever a test does, discord.py's REST base and default gateway are put back afterwards."""
    base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    decompression = discord.utils._ActiveDecompressionContext
    yield
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
    discord.utils._ActiveDecompressionContext = decompression


@contextlib.asynccontextmanager
async def fake_discord(**kwargs: Any) -> AsyncIterator[FakeDiscord]:
    """A started fake that discord.py points at for the duration of the block."""
    async with FakeDiscord(token=TOKEN, **kwargs) as fake:
        with point_discord_at(fake):
            yield fake


def intents(message_content: bool = True) -> discord.Intents:
    value = discord.Intents.default()
    value.message_content = message_content
    return value


class MiniBot(commands.AutoShardedBot):
    """The smallest bot with the shape of citebot: a guild slash command that defers, mention handling, threads."""

    def __init__(self, guild_id: str, *, answer_delay: float = 0.0) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned, intents=intents(), help_command=None, guild_ready_timeout=0.1
        )
        self.guild_id = guild_id
        self.answer_delay = answer_delay
        self.questions: list[str] = []
        self.seen: list[discord.Message] = []
        self.errors: list[BaseException] = []
        self.resumed_count = 0

        @self.tree.command(name="ask", description="Ask the corpus a question", guild=discord.Object(int(guild_id)))
        async def ask(interaction: discord.Interaction, question: str) -> None:
            self.questions.append(question)
            try:
                if self.answer_delay:
                    await asyncio.sleep(self.answer_delay)
                await interaction.response.defer()
                await interaction.followup.send(f"answer to {question}")
            except discord.HTTPException as exc:
                self.errors.append(exc)

    async def setup_hook(self) -> None:
        await self.tree.sync(guild=discord.Object(int(self.guild_id)))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every non-initial IDENTIFY; the fake has no identify rate limit."""

    async def on_resumed(self) -> None:
        self.resumed_count += 1

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        self.seen.append(message)
        if self.user in message.mentions and not isinstance(message.channel, discord.Thread):
            thread = await message.create_thread(name="Answer")
            await thread.send("answer in thread")


# ----------------------------------------------------------------------------------------------------- tests


class ZlibStreamContext:
    """discord.py's own zlib-stream decompressor, which it only defines when zstandard is missing."""

    COMPRESSION_TYPE = "zlib-stream"

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.context = zlib.decompressobj()

    def decompress(self, data: bytes, /) -> str | None:
        self.buffer.extend(data)
        if len(data) < 4 or data[-4:] != b"\x00\x00\xff\xff":
            return None
        message = self.context.decompress(self.buffer)
        self.buffer = bytearray()
        return message.decode("utf-8")


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["default", "zlib-stream", "plain"])
async def test_client_becomes_ready_and_caches_the_guild(mode: str) -> None:
    """READY + GUILD_CREATE are enough for discord.py to cache the guild, its channels and its own member."""
    if mode == "zlib-stream":
        discord.utils._ActiveDecompressionContext = ZlibStreamContext
    guild = FakeGuild("Docs", channels=[FakeChannel("general"), FakeChannel("help", position=1)])
    async with fake_discord(guilds=[guild], compression=mode != "plain") as fake:
        client = discord.Client(intents=intents(), guild_ready_timeout=0.1)
        async with run_client(client, TOKEN):
            cached = client.get_guild(int(guild.id))
            assert cached is not None and cached.name == "Docs"
            help_channel = cached.get_channel(int(guild.channel("help").id))
            assert isinstance(help_channel, discord.TextChannel) and help_channel.name == "help"
            assert cached.me is not None and cached.me.id == int(fake.bot_user.id)
            assert client.user is not None and client.user.id == int(fake.bot_user.id)
            assert client.application_id == int(fake.application_id)
        expected = {
            "default": discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE,
            "zlib-stream": "zlib-stream",
            "plain": None,
        }[mode]
        assert fake.connections[0].compression == expected
        assert fake.connections[0].query["v"] == "10"
        assert fake.violations == [] and fake.unknown_requests == []


@pytest.mark.asyncio
async def test_slash_command_is_synced_deferred_and_followed_up() -> None:
    """tree.sync stores the command; a dispatched /ask reaches the handler, whose defer and followup are recorded."""
    async with fake_discord() as fake:
        bot = MiniBot(fake.guild.id)
        async with run_client(bot, TOKEN):
            synced = fake.synced_commands(fake.guild.id)
            assert [c["name"] for c in synced] == ["ask"]
            assert synced[0]["options"][0]["name"] == "question"

            interaction = await fake.dispatch_slash_command("ask", {"question": "why?"}, guild_id=fake.guild.id)
            assert snowflake_time(interaction.id).year >= 2024

            callback = await fake.wait_for_callback(interaction, WAIT)
            assert callback.json["type"] == 5
            assert callback.query.get("with_response") == "1"
            assert callback.status == 200 and set(callback.response) == {"interaction", "resource"}

            followup = await fake.wait_for_followup(interaction, WAIT)
            assert followup.json["content"] == "answer to why?"
            assert followup.status == 200 and interaction.followup_ids == [followup.response["id"]]
            assert bot.questions == ["why?"] and bot.errors == []
        assert fake.violations == [] and fake.unknown_requests == []


@pytest.mark.asyncio
async def test_429_with_via_header_is_retried() -> None:
    """discord.py retries a 429 that carries Via after retry_after, and the second attempt succeeds."""
    async with fake_discord() as fake:
        client = discord.Client(intents=intents(), guild_ready_timeout=0.1)
        async with run_client(client, TOKEN):
            channel = client.get_channel(int(fake.default_channel_id))
            assert isinstance(channel, discord.TextChannel)
            rule = fake.rate_limit(1, method="POST", path=r"/channels/\d+/messages", retry_after=0.3)
            started = time.monotonic()
            sent = await channel.send("hello")
            assert time.monotonic() - started >= 0.3
            assert sent.content == "hello" and str(sent.id) in fake.messages
            attempts = fake.requests_matching("POST", r"/channels/\d+/messages")
            assert [r.status for r in attempts] == [429, 200]
            assert len(rule.hits) == 1 and rule.remaining == 0


@pytest.mark.asyncio
async def test_op7_reconnect_resumes_and_replays_missed_events() -> None:
    """After op 7 the client RESUMEs on resume_gateway_url, gets the events it missed, and keeps working."""
    async with fake_discord() as fake:
        bot = MiniBot(fake.guild.id)
        async with run_client(bot, TOKEN):
            session = await fake.wait_for_session()
            first = await fake.send_reconnect()
            missed = await fake.dispatch_message("sent while reconnecting")

            resume = await fake.wait_for_gateway(lambda f: f.direction == "recv" and f.op == 6, WAIT)
            assert resume.d["session_id"] == session.session_id
            await fake.wait_for_gateway(lambda f: f.direction == "sent" and f.t == "RESUMED", WAIT)
            await fake.wait_until(lambda: bot.resumed_count == 1, WAIT, "on_resumed")
            await fake.wait_until(lambda: any(m.id == int(missed["id"]) for m in bot.seen), WAIT, "replay")

            second = fake.connections[resume.connection_id]
            assert second is not first and second.path == "/resume-gateway" and second.resumed
            assert first.close_code == 4000 and session.resumes == 1
            assert fake.session_for_shard(0) is session

            interaction = await fake.dispatch_slash_command("ask", {"question": "still there?"})
            followup = await fake.wait_for_followup(interaction, WAIT)
            assert followup.json["content"] == "answer to still there?"


@pytest.mark.asyncio
async def test_heartbeats_are_acknowledged() -> None:
    """With a short HELLO interval the client heartbeats repeatedly and every beat is ACKed."""
    async with fake_discord(heartbeat_interval_ms=200) as fake:
        client = discord.Client(intents=intents(), guild_ready_timeout=0.1)
        async with run_client(client, TOKEN):
            connection = fake.connections[0]
            await fake.wait_until(lambda: connection.heartbeat_acks >= 3, 5.0, "three heartbeat ACKs")
            assert connection.heartbeats_received == connection.heartbeat_acks
            assert client.latency < 1.0


@pytest.mark.asyncio
async def test_over_limit_messages_are_rejected_and_recorded() -> None:
    """Bodies over Discord's limits get 400 / 50035 like on Discord, and each is recorded as a violation."""
    async with fake_discord() as fake:
        client = discord.Client(intents=intents(), guild_ready_timeout=0.1)
        async with run_client(client, TOKEN):
            channel = client.get_channel(int(fake.default_channel_id))
            assert isinstance(channel, discord.TextChannel)

            with pytest.raises(discord.HTTPException) as too_long:
                await channel.send("x" * 2001)
            assert too_long.value.status == 400 and too_long.value.code == 50035
            assert "content" in fake.violations[-1].errors

            embeds = [discord.Embed(description="d" * 4000), discord.Embed(description="d" * 2001)]
            with pytest.raises(discord.HTTPException):
                await channel.send(embeds=embeds)
            assert fake.violations[-1].errors["embeds"]["_errors"][0]["code"] == "MAX_EMBED_SIZE_EXCEEDED"

            view = discord.ui.View()
            view.add_item(discord.ui.Button(label="b" * 81, custom_id="ok"))
            with pytest.raises(discord.HTTPException):
                await channel.send("pick", view=view)
            assert "label" in fake.violations[-1].messages[0]

            accepted = await channel.send("y" * 2000)
            assert len(accepted.content) == 2000
            assert len(fake.violations) == 3


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"content": "x" * 2001}, "content"),
        ({"embeds": [{"title": "t"}] * 11}, "embeds"),
        ({"embeds": [{"title": "t" * 257}]}, "embeds.0.title"),
        ({"embeds": [{"description": "d" * 4097}]}, "embeds.0.description"),
        ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, "embeds.0.fields"),
        ({"embeds": [{"fields": [{"name": "n" * 257, "value": "v"}]}]}, "embeds.0.fields.0.name"),
        ({"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]}, "embeds.0.fields.0.value"),
        ({"embeds": [{"footer": {"text": "f" * 2049}}]}, "embeds.0.footer.text"),
        ({"embeds": [{"author": {"name": "a" * 257}}]}, "embeds.0.author.name"),
        ({"embeds": [{"description": "d" * 3000}, {"description": "d" * 3001}]}, "embeds"),
        (
            {"components": [{"type": 1, "components": [{"type": 2, "style": 1, "label": "l" * 81, "custom_id": "c"}]}]},
            "components.0.components.0.label",
        ),
        (
            {
                "components": [
                    {"type": 1, "components": [{"type": 2, "style": 1, "label": "l", "custom_id": "c" * 101}]}
                ]
            },
            "components.0.components.0.custom_id",
        ),
        ({}, "<body>"),
    ],
)
def test_validate_message_body_limits(body: dict[str, Any], where: str) -> None:
    """Every documented limit the fake enforces, checked without a server."""
    result = validate_message_body(body)
    assert result is not None
    code, _errors, lines = result
    assert code == (50006 if not body else 50035)
    assert body == {} or any(line.startswith(where + ":") for line in lines), lines
    assert validate_message_body({"content": "ok", "embeds": [{"title": "t" * 256}]}) is None


@pytest.mark.asyncio
async def test_wrong_token_is_refused() -> None:
    """REST with another token gets 401, which discord.py turns into LoginFailure."""
    async with fake_discord() as fake:
        client = discord.Client(intents=intents())
        with pytest.raises(discord.LoginFailure):
            async with run_client(client, "not-the-token"):
                pass
        assert fake.requests[0].path == "/users/@me" and fake.requests[0].status == 401


@pytest.mark.asyncio
@pytest.mark.parametrize("sharded", [False, True])
async def test_disallowed_privileged_intent_closes_with_4014(sharded: bool) -> None:
    """Asking for message content when the portal switch is off closes the gateway with 4014.

    discord.py surfaces it differently: with reconnect=False a plain Client re-raises ConnectionClosed(4014)
    before its own 4014 check, while an AutoSharded client raises PrivilegedIntentsRequired.
    """
    async with fake_discord(enabled_privileged_intents=0) as fake:
        client: discord.Client = (
            discord.AutoShardedClient(intents=intents(message_content=True))
            if sharded
            else discord.Client(intents=intents(message_content=True))
        )
        with pytest.raises((discord.PrivilegedIntentsRequired, discord.ConnectionClosed)) as failure:
            async with run_client(client, TOKEN):
                pass
        if sharded:
            assert isinstance(failure.value, discord.PrivilegedIntentsRequired)
        else:
            assert isinstance(failure.value, discord.ConnectionClosed) and failure.value.code == 4014
        assert fake.connections[0].close_code == 4014


@pytest.mark.asyncio
async def test_mention_opens_a_thread_and_thread_messages_arrive_in_it() -> None:
    """A mention reaches on_message; the thread the bot opens is cached and messages in it arrive as Thread."""
    async with fake_discord() as fake:
        bot = MiniBot(fake.guild.id)
        async with run_client(bot, TOKEN):
            question = await fake.dispatch_message(f"{fake.bot_user.mention} what is a snowflake?")
            assert question["mentions"][0]["id"] == fake.bot_user.id

            reply = await fake.wait_for_channel_message(question["id"], WAIT)
            thread = fake.channels[question["id"]]
            assert thread["type"] == 11 and thread["parent_id"] == fake.default_channel_id
            assert reply["content"] == "answer in thread"
            await fake.wait_until(lambda: bot.get_channel(int(thread["id"])) is not None, WAIT, "THREAD_CREATE")

            followup = await fake.dispatch_message("and in the thread?", channel_id=thread["id"])
            await fake.wait_until(lambda: any(m.id == int(followup["id"]) for m in bot.seen), WAIT, "thread message")
            seen = next(m for m in bot.seen if m.id == int(followup["id"]))
            assert isinstance(seen.channel, discord.Thread) and seen.content == "and in the thread?"
        assert fake.violations == []


@pytest.mark.asyncio
async def test_message_content_is_hidden_without_the_intent_unless_mentioned() -> None:
    """Without MESSAGE_CONTENT, Discord blanks guild messages that do not mention the bot; so does the fake."""
    async with fake_discord() as fake:
        seen: list[discord.Message] = []
        client = discord.Client(intents=intents(message_content=False), guild_ready_timeout=0.1)
        client.event(_collector(seen))
        async with run_client(client, TOKEN):
            await fake.dispatch_message("plain question")
            await fake.dispatch_message(f"{fake.bot_user.mention} direct question")
            await fake.wait_until(lambda: len(seen) == 2, WAIT, "two messages")
            assert [m.content for m in seen] == ["", f"<@{fake.bot_user.id}> direct question"]


def _collector(seen: list[discord.Message]) -> Any:
    async def on_message(message: discord.Message) -> None:
        seen.append(message)

    return on_message


@pytest.mark.asyncio
async def test_button_click_reaches_the_view_and_updates_the_message() -> None:
    """dispatch_component_click drives a discord.ui.View callback; its UPDATE_MESSAGE edits the stored message."""
    async with fake_discord() as fake:
        client = discord.Client(intents=intents(), guild_ready_timeout=0.1)
        async with run_client(client, TOKEN):
            channel = client.get_channel(int(fake.default_channel_id))
            assert isinstance(channel, discord.TextChannel)
            view = discord.ui.View(timeout=None)
            button: discord.ui.Button[discord.ui.View] = discord.ui.Button(label="More", custom_id="more")

            async def clicked(interaction: discord.Interaction) -> None:
                await interaction.response.edit_message(content="expanded")

            button.callback = clicked  # type: ignore[method-assign]
            view.add_item(button)
            message = await channel.send("short answer", view=view)

            interaction = await fake.dispatch_component_click(message.id, "more")
            callback = await fake.wait_for_callback(interaction, WAIT)
            assert callback.json["type"] == 7 and callback.status == 200
            assert fake.messages[str(message.id)]["content"] == "expanded"
        assert fake.violations == []


@pytest.mark.asyncio
async def test_late_acknowledgement_is_refused_like_discord() -> None:
    """An interaction answered after the deadline gets 404 Unknown interaction, recorded as a violation."""
    async with fake_discord(interaction_response_timeout=0.2) as fake:
        bot = MiniBot(fake.guild.id, answer_delay=0.4)
        async with run_client(bot, TOKEN):
            interaction = await fake.dispatch_slash_command("ask", {"question": "slow"})
            callback = await fake.wait_for_callback(interaction, WAIT)
            assert callback.status == 404
            await fake.wait_until(lambda: bool(bot.errors), WAIT, "the handler's NotFound")
            assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062
            assert [v.code for v in fake.violations] == [10062]


@pytest.mark.asyncio
async def test_two_shards_each_get_their_guild() -> None:
    """An AutoShardedBot asks /gateway/bot for the shard count and each shard receives only its own guilds."""
    base = int(snowflake())
    ids = [base + ((shard - (base >> 22)) % 2 << 22) for shard in (0, 1)]
    guilds = [FakeGuild(f"shard{i}", id=str(gid)) for i, gid in enumerate(ids)]
    async with fake_discord(guilds=guilds, shards=2) as fake:
        bot = MiniBot(guilds[0].id)
        async with run_client(bot, TOKEN):
            assert bot.shard_count == 2
            assert {g.id: g.shard_id for g in bot.guilds} == {ids[0]: 0, ids[1]: 1}
            sessions = [fake.session_for_shard(i) for i in (0, 1)]
            assert all(s is not None for s in sessions)
            message = await fake.dispatch_message(
                "hello shard one", channel_id=guilds[1].channels[0].id, author=FakeUser("bob")
            )
            await fake.wait_until(lambda: any(m.id == int(message["id"]) for m in bot.seen), WAIT, "shard 1")
            assert sessions[1] is not None and sessions[1].seq > 0


@pytest.mark.asyncio
async def test_unknown_routes_are_recorded_and_404() -> None:
    """Anything the fake does not implement answers 404 and lands in unknown_requests, so tests notice."""
    async with fake_discord() as fake:
        client = discord.Client(intents=intents(), guild_ready_timeout=0.1)
        async with run_client(client, TOKEN):
            with pytest.raises(discord.NotFound):
                await client.http.request(discord.http.Route("GET", "/stickers/{sticker_id}", sticker_id=1))
            assert [r.path for r in fake.unknown_requests] == ["/stickers/1"]


@pytest.mark.asyncio
async def test_raw_gateway_rejects_a_bad_identify_and_an_unknown_resume() -> None:
    """Below discord.py: a wrong IDENTIFY token closes with 4004, an unknown session's RESUME gets op 9."""
    async with fake_discord() as fake, aiohttp.ClientSession() as http:
        async with http.get(f"{fake.api_base}/gateway/bot") as unauthorized:
            assert unauthorized.status == 401
            assert unauthorized.headers["Content-Type"] == "application/json"
        async with http.ws_connect(fake.gateway_url + "?v=10&encoding=json") as ws:
            hello = await ws.receive_json(timeout=WAIT)
            assert hello == {"op": 10, "d": {"heartbeat_interval": fake.heartbeat_interval_ms}}
            await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 0, "properties": {}}})
            closing = await ws.receive(timeout=WAIT)
            assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4004
        async with http.ws_connect(fake.gateway_url + "?v=10&encoding=json") as ws:
            await ws.receive_json(timeout=WAIT)
            await ws.send_json({"op": 6, "d": {"token": TOKEN, "session_id": "nope", "seq": 3}})
            assert await ws.receive_json(timeout=WAIT) == {"op": 9, "d": False}


@pytest.mark.asyncio
async def test_the_first_followup_after_a_defer_replaces_the_thinking_message() -> None:
    """Discord: the first followup after a deferred response edits the loading message and keeps the defer's
    visibility (its own ephemeral flag is ignored); later followups are new messages."""
    async with fake_discord() as fake:
        bot = MiniBot(fake.guild.id)
        async with run_client(bot, TOKEN):
            interaction = await fake.dispatch_slash_command("ask", {"question": "why?"})
            followup = await fake.wait_for_followup(interaction, WAIT)
            assert followup.response["id"] == interaction.original_message_id
            message = fake.messages[followup.response["id"]]
            assert message["content"] == "answer to why?" and not message["flags"] & (64 | 128)

            async with aiohttp.ClientSession() as http:
                url = f"{fake.api_base}{interaction.webhook_path}?wait=true"
                async with http.post(url, json={"content": "second", "flags": 64}) as response:
                    second = await response.json()
            assert second["id"] != followup.response["id"] and second["flags"] & 64
        assert fake.violations == []


@pytest.mark.asyncio
async def test_interaction_tokens_expire() -> None:
    """After the token's lifetime (15 minutes on Discord) its webhook answers 401 Invalid Webhook Token."""
    async with fake_discord(interaction_token_lifetime=0.2) as fake:
        bot = MiniBot(fake.guild.id, answer_delay=0.0)
        async with run_client(bot, TOKEN):
            interaction = await fake.dispatch_slash_command("ask", {"question": "why?"})
            await fake.wait_for_followup(interaction, WAIT)
            await asyncio.sleep(0.3)
            async with aiohttp.ClientSession() as http:
                url = f"{fake.api_base}/webhooks/{fake.application_id}/{interaction.token}"
                async with http.post(url, json={"content": "late"}) as late:
                    assert late.status == 401 and (await late.json())["code"] == 50027
        assert [v.code for v in fake.violations] == [50027]


@pytest.mark.asyncio
async def test_permissions_forum_posts_voice_chats_and_pings() -> None:
    """Missing permissions are 403 (history reads come back empty instead); a forum post's first message has
    the post's id; a voice channel's chat takes messages but no threads; pings follow allowed_mentions."""
    from tests.fake_discord import CHANNEL_FORUM, CHANNEL_VOICE, READ_MESSAGE_HISTORY, SEND_MESSAGES

    channels = [
        FakeChannel("general"),
        FakeChannel("read-only", bot_denied=SEND_MESSAGES | READ_MESSAGE_HISTORY),
        FakeChannel("forum", type=CHANNEL_FORUM),
        FakeChannel("voice", type=CHANNEL_VOICE),
    ]
    async with fake_discord(guilds=[FakeGuild("g", channels=channels)]) as fake:
        client = discord.Client(intents=intents(), guild_ready_timeout=0.1)
        async with run_client(client, TOKEN):
            read_only = client.get_channel(int(channels[1].id))
            assert isinstance(read_only, discord.TextChannel)
            assert not read_only.permissions_for(read_only.guild.me).send_messages
            with pytest.raises(discord.Forbidden) as refused:
                await read_only.send("hello")
            assert refused.value.code == 50013
            assert [m async for m in read_only.history(limit=10)] == []

            post = await fake.open_thread(channels[2].id, name="a post", content="what is this?")
            assert fake.messages[post["id"]]["content"] == "what is this?"

            said = await fake.dispatch_message("in the voice chat", channel_id=channels[3].id)
            voice = client.get_channel(int(channels[3].id))
            assert isinstance(voice, discord.VoiceChannel)
            with pytest.raises(discord.HTTPException) as no_thread:
                await voice.get_partial_message(int(said["id"])).create_thread(name="t")
            assert no_thread.value.code == 50024

            general = client.get_channel(int(channels[0].id))
            assert isinstance(general, discord.TextChannel)
            user = fake.default_user
            loud = await general.send(f"@everyone {user.mention}")
            quiet = await general.send(f"@everyone {user.mention}", allowed_mentions=discord.AllowedMentions.none())
            reply = await quiet.reply("a reply", mention_author=False)
            assert fake.pings == {str(loud.id): [f"user:{user.id}", "everyone"]} and str(reply.id) not in fake.pings
    assert fake.violations[-1].code == 50024


@pytest.mark.asyncio
async def test_rate_limit_headers_come_with_ordinary_responses() -> None:
    async with (
        fake_discord() as fake,
        aiohttp.ClientSession() as http,
        http.get(f"{fake.api_base}/users/@me", headers={"Authorization": f"Bot {TOKEN}"}) as response,
    ):
        assert response.status == 200
        assert response.headers["X-RateLimit-Limit"] == "50"
        assert int(response.headers["X-RateLimit-Remaining"]) == 49
        assert float(response.headers["X-RateLimit-Reset-After"]) <= 1.0 and response.headers["X-RateLimit-Bucket"]


@pytest.mark.asyncio
async def test_options_outside_the_declared_lengths_are_never_sent() -> None:
    async with fake_discord() as fake:
        bot = MiniBot(fake.guild.id)
        async with run_client(bot, TOKEN):
            fake.synced_commands(fake.guild.id)[0]["options"][0]["max_length"] = 5
            with pytest.raises(ValueError, match="max_length 5"):
                await fake.dispatch_slash_command("ask", {"question": "too long"})
