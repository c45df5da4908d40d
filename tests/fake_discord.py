"""A fake Discord (REST API + gateway websocket) on 127.0.0.1 for end-to-end tests of discord.py bots.

Why: the bot's real discord.py client must be exercised without network access or a real Discord. This module
serves just enough of Discord's HTTP API (v10) and gateway (JSON encoding, zlib-stream or zstd-stream transport
compression) that discord.py logs in, identifies, caches guilds, receives interactions and messages, and sends
responses. Everything the bot sends is recorded, checked against Discord's documented limits, and can be
awaited from a test. Faults that matter in production (429 rate limits, op 7 RECONNECT, invalid sessions,
fatal close codes, slow interaction acknowledgements) can be injected.

Typical use::

    async with FakeDiscord(token="t", guilds=[FakeGuild("g")]) as fake, point_discord_at(fake):
        async with run_client(bot, fake.token):
            interaction = await fake.dispatch_slash_command("ask", {"question": "why?"})
            await fake.wait_for_followup(interaction)

Only the standard library and aiohttp are needed; ``zstandard`` is used when discord.py asks for zstd-stream.
Nothing here talks to anything but the loopback interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import socket
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import WSMsgType, web

if TYPE_CHECKING:  # pragma: no cover - typing only
    import discord

try:  # discord.py negotiates zstd-stream whenever zstandard is importable, so the fake must speak it too.
    import zstandard as _zstd
except ImportError:  # pragma: no cover - depends on the environment
    _zstd = None  # type: ignore[assignment]

__all__ = [
    "CHANNEL_FORUM",
    "CHANNEL_VOICE",
    "CREATE_PUBLIC_THREADS",
    "DEFAULT_PERMISSIONS",
    "DISCORD_EPOCH_MS",
    "INTENT_DIRECT_MESSAGES",
    "INTENT_GUILDS",
    "INTENT_GUILD_MEMBERS",
    "INTENT_GUILD_MESSAGES",
    "INTENT_GUILD_PRESENCES",
    "INTENT_MESSAGE_CONTENT",
    "PRIVILEGED_INTENTS",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "SEND_MESSAGES_IN_THREADS",
    "VIEW_CHANNEL",
    "FakeChannel",
    "FakeDiscord",
    "FakeDiscordTimeout",
    "FakeGuild",
    "FakeInteraction",
    "FakeRole",
    "FakeUser",
    "GatewayConnection",
    "GatewayFrame",
    "GatewaySession",
    "RateLimitRule",
    "RecordedRequest",
    "Violation",
    "point_discord_at",
    "run_client",
    "snowflake",
    "snowflake_time",
    "validate_message_body",
]

JSONDict = dict[str, Any]
T = TypeVar("T")

DISCORD_EPOCH_MS = 1420070400000
"""Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds; snowflakes count from it."""

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

_PERMISSION_BITS = (
    6,  # ADD_REACTIONS
    10,  # VIEW_CHANNEL
    11,  # SEND_MESSAGES
    13,  # MANAGE_MESSAGES
    14,  # EMBED_LINKS
    15,  # ATTACH_FILES
    16,  # READ_MESSAGE_HISTORY
    18,  # USE_EXTERNAL_EMOJIS
    31,  # USE_APPLICATION_COMMANDS
    34,  # MANAGE_THREADS
    35,  # CREATE_PUBLIC_THREADS
    36,  # CREATE_PRIVATE_THREADS
    38,  # SEND_MESSAGES_IN_THREADS
)
DEFAULT_PERMISSIONS = sum(1 << bit for bit in _PERMISSION_BITS)
# https://discord.com/developers/docs/topics/permissions#permissions-bitwise-permission-flags
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
READ_MESSAGE_HISTORY = 1 << 16
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
"""What @everyone may do in fake guilds: enough for a bot that answers, embeds, reacts and opens threads."""
PERMISSION_ADMINISTRATOR = 1 << 3
PERMISSION_MANAGE_GUILD = 1 << 5
ALL_PERMISSIONS = (1 << 53) - 1

MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7
MESSAGE_FLAG_HAS_THREAD = 1 << 5

CHANNEL_TEXT = 0
CHANNEL_DM = 1
CHANNEL_VOICE = 2  # has a text chat: messages can be sent in it, threads cannot be started from them
CHANNEL_NEWS = 5
CHANNEL_FORUM = 15  # holds only threads (posts); the first message of a post has the post's id
CHANNEL_PUBLIC_THREAD = 11
CHANNEL_PRIVATE_THREAD = 12
THREAD_TYPES = (10, CHANNEL_PUBLIC_THREAD, CHANNEL_PRIVATE_THREAD)

# Ordinary responses carry rate-limit headers for this budget; generous, so that tests never wait on it.
BUCKET_LIMIT = 50
BUCKET_SECONDS = 1.0

# Gateway close codes after which Discord forgets the session (a RESUME is then answered with op 9).
_SESSION_ENDING_CLOSE_CODES = {1000, 1001, 4004, 4010, 4011, 4012, 4013, 4014}


# --------------------------------------------------------------------------------------------------- snowflakes


class _SnowflakeGenerator:
    """Makes unique, time-ordered snowflakes.

    Why the timestamp matters: discord.py derives ``created_at`` from an id, and treats an interaction whose id is
    older than 15 minutes as expired, so ids must encode *now*.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        """Return a fresh id: (ms since Discord's epoch) << 22, bumped past the last one if the clock has not moved."""
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


_SNOWFLAKES = _SnowflakeGenerator()


def snowflake() -> str:
    """A new snowflake id as Discord sends it (a decimal string)."""
    return str(_SNOWFLAKES.next())


def snowflake_time(value: str | int) -> dt.datetime:
    """The creation time encoded in a snowflake, for assertions about ids."""
    ms = (int(value) >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# ------------------------------------------------------------------------------------------- configured world


@dataclass
class FakeUser:
    """A Discord user the fake knows about (a guild member, a message author, the bot itself)."""

    username: str = "alice"
    id: str = field(default_factory=snowflake)
    bot: bool = False
    global_name: str | None = None

    @property
    def mention(self) -> str:
        """The ``<@id>`` text that makes Discord list this user in a message's ``mentions``."""
        return f"<@{self.id}>"

    def payload(self) -> JSONDict:
        """The user object as the API sends it."""
        return {
            "id": self.id,
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
        }


@dataclass
class FakeChannel:
    """A guild channel; ``type`` 0 is a text channel, 2 a voice channel (with its text chat), 4 a category,
    5 an announcement channel, 15 a forum. ``bot_denied`` is a permission overwrite denying the bot these bits."""

    name: str = "general"
    id: str = field(default_factory=snowflake)
    type: int = CHANNEL_TEXT
    position: int = 0
    parent_id: str | None = None
    topic: str | None = None
    nsfw: bool = False
    bot_denied: int = 0


@dataclass
class FakeRole:
    """A guild role (https://discord.com/developers/docs/topics/permissions#role-object): a name and the
    permission bits it grants on top of @everyone's."""

    name: str
    id: str = field(default_factory=snowflake)
    permissions: int = 0


@dataclass
class FakeGuild:
    """A guild served to the bot in GUILD_CREATE. The bot is always a member; ``members`` are the other users.

    ``roles`` are the guild's roles besides @everyone; ``member_roles`` maps a user id to the ids of its roles.
    """

    name: str = "Fake Guild"
    id: str = field(default_factory=snowflake)
    channels: list[FakeChannel] = field(default_factory=lambda: [FakeChannel("general")])
    members: list[FakeUser] = field(default_factory=list)
    owner_id: str | None = None
    everyone_permissions: int = DEFAULT_PERMISSIONS
    bot_role_id: str = field(default_factory=snowflake)
    """The role Discord creates for a bot invited with permissions (``managed``, tagged with the bot's id)."""
    roles: list[FakeRole] = field(default_factory=list)
    member_roles: dict[str, list[str]] = field(default_factory=dict)

    def permissions_of(self, user: FakeUser) -> int:
        """A member's base permissions: @everyone's, OR the roles'; the owner and administrators get every bit
        (https://discord.com/developers/docs/topics/permissions#permission-hierarchy)."""
        granted = self.everyone_permissions
        for role in self.roles:
            if role.id in self.member_roles.get(user.id, []):
                granted |= role.permissions
        if user.id == self.owner_id or granted & PERMISSION_ADMINISTRATOR:
            return ALL_PERMISSIONS
        return granted

    def channel(self, name: str) -> FakeChannel:
        """The channel called ``name``; raises KeyError so a typo in a test fails loudly."""
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(f"guild {self.name!r} has no channel {name!r}")

    @property
    def text_channels(self) -> list[FakeChannel]:
        """Channels a message can be sent to (text and announcement channels)."""
        return [c for c in self.channels if c.type in (CHANNEL_TEXT, CHANNEL_NEWS)]


# ------------------------------------------------------------------------------------------------ records


@dataclass
class RecordedRequest:
    """One REST request the bot made, and how the fake answered it."""

    index: int
    method: str
    path: str
    """Path below the API base, e.g. ``/channels/123/messages`` (no ``/api/v10`` prefix, no query)."""
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    time: float
    """``time.monotonic()`` when the request arrived."""
    status: int | None = None
    """The status the fake answered with; None while the request is still being handled."""
    response: Any = None

    @property
    def done(self) -> bool:
        """Whether the fake has answered this request."""
        return self.status is not None


@dataclass
class Violation:
    """A request Discord would have refused: invalid form body, empty message, late or double acknowledgement."""

    request: RecordedRequest
    code: int
    """Discord's JSON error code (50035 invalid form body, 50006 empty message, 40060, 10062, 10015, ...)."""
    errors: JSONDict
    messages: list[str]
    """Human-readable ``path: problem`` lines, e.g. ``content: Must be 2000 or fewer in length.``."""


@dataclass
class RateLimitRule:
    """Makes the next ``remaining`` requests matching ``predicate`` answer 429."""

    predicate: Callable[[RecordedRequest], bool]
    remaining: int
    retry_after: float
    is_global: bool
    scope: str
    hits: list[RecordedRequest] = field(default_factory=list)


@dataclass
class GatewayFrame:
    """One gateway payload, received from the client (``direction == "recv"``) or sent to it (``"sent"``)."""

    connection_id: int
    direction: str
    op: int | None
    t: str | None
    s: int | None
    d: Any
    time: float


@dataclass
class GatewaySession:
    """A gateway session created by IDENTIFY; it outlives connections so that RESUME can replay missed events."""

    session_id: str
    shard_id: int
    shard_count: int
    intents: int
    seq: int = 0
    events: list[JSONDict] = field(default_factory=list)
    connection: GatewayConnection | None = None
    resumes: int = 0
    invalidated: bool = False


@dataclass
class FakeInteraction:
    """An interaction the fake dispatched, and what the bot did with it."""

    id: str
    token: str
    type: int
    payload: JSONDict
    created: float
    """``time.monotonic()`` at dispatch, for the 3-second acknowledgement deadline."""
    application_id: str
    guild_id: str | None
    channel_id: str | None
    response_type: int | None = None
    """The callback type the bot answered with (4 message, 5 defer, 6 deferred update, 7 update, 9 modal)."""
    original_message_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)

    @property
    def responded(self) -> bool:
        """Whether the bot acknowledged the interaction."""
        return self.response_type is not None

    @property
    def callback_path(self) -> str:
        """The path of this interaction's callback request."""
        return f"/interactions/{self.id}/{self.token}/callback"

    @property
    def webhook_path(self) -> str:
        """The path of followups; ``webhook_path + "/messages/@original"`` is the original response."""
        return f"/webhooks/{self.application_id}/{self.token}"


class FakeDiscordTimeout(AssertionError):
    """Raised when a ``wait_for_*`` helper gives up; an AssertionError so pytest shows it as a test failure."""


# ----------------------------------------------------------------------------------------------- validation


class _Errors:
    """Collects Discord-style nested form errors (``{"content": {"_errors": [...]}}``) and flat descriptions."""

    def __init__(self) -> None:
        self.tree: JSONDict = {}
        self.lines: list[str] = []

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
        self.lines.append(f"{'.'.join(str(p) for p in path) or '<body>'}: {message}")

    def max_length(self, path: Sequence[str | int], value: Any, limit: int) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def required_text(self, path: Sequence[str | int], value: Any, limit: int) -> None:
        if not isinstance(value, str) or not value.strip():
            self.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        else:
            self.max_length(path, value, limit)

    def __bool__(self) -> bool:
        return bool(self.lines)


def _embed_text_length(embed: Mapping[str, Any]) -> int:
    """Characters that count towards Discord's 6000-per-message embed budget."""
    total = len(str(embed.get("title") or "")) + len(str(embed.get("description") or ""))
    for field_ in embed.get("fields") or []:
        if isinstance(field_, Mapping):
            total += len(str(field_.get("name") or "")) + len(str(field_.get("value") or ""))
    for key in ("footer", "author"):
        part = embed.get(key)
        if isinstance(part, Mapping):
            total += len(str(part.get("text" if key == "footer" else "name") or ""))
    return total


def _validate_embeds(embeds: Any, errors: _Errors, prefix: Sequence[str | int]) -> None:
    if not isinstance(embeds, list):
        errors.add([*prefix, "embeds"], "LIST_TYPE_CONVERT", "Must be an array.")
        return
    if len(embeds) > 10:
        errors.add([*prefix, "embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        path: list[str | int] = [*prefix, "embeds", i]
        if not isinstance(embed, Mapping):
            errors.add(path, "MODEL_TYPE_CONVERT", "Must be an object.")
            continue
        errors.max_length([*path, "title"], embed.get("title"), 256)
        errors.max_length([*path, "description"], embed.get("description"), 4096)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.add([*path, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, field_ in enumerate(fields):
            if not isinstance(field_, Mapping):
                errors.add([*path, "fields", j], "MODEL_TYPE_CONVERT", "Must be an object.")
                continue
            errors.required_text([*path, "fields", j, "name"], field_.get("name"), 256)
            errors.required_text([*path, "fields", j, "value"], field_.get("value"), 1024)
        footer = embed.get("footer")
        if isinstance(footer, Mapping):
            errors.max_length([*path, "footer", "text"], footer.get("text"), 2048)
        author = embed.get("author")
        if isinstance(author, Mapping):
            errors.max_length([*path, "author", "name"], author.get("name"), 256)
        total += _embed_text_length(embed)
    if total > 6000:
        errors.add([*prefix, "embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")


def _validate_components(components: Any, errors: _Errors, prefix: Sequence[str | int]) -> None:
    """Action rows of buttons: at most 5 rows of 5, labels up to 80 and custom ids up to 100 characters.

    Limits: https://discord.com/developers/docs/components/reference#action-row and #button.
    """
    if not isinstance(components, list):
        errors.add([*prefix, "components"], "LIST_TYPE_CONVERT", "Must be an array.")
        return
    if len(components) > 5:
        errors.add([*prefix, "components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    for i, row in enumerate(components):
        path: list[str | int] = [*prefix, "components", i]
        if not isinstance(row, Mapping) or row.get("type") != 1:
            errors.add([*path, "type"], "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "Top-level components must be action rows.")
            continue
        buttons = row.get("components") or []
        if len(buttons) > 5:
            errors.add([*path, "components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for k, button in enumerate(buttons):
            where: list[str | int] = [*path, "components", k]
            if not isinstance(button, Mapping):
                errors.add(where, "MODEL_TYPE_CONVERT", "Must be an object.")
                continue
            errors.max_length([*where, "label"], button.get("label"), 80)
            if button.get("style") == 5:
                if not button.get("url"):
                    errors.add([*where, "url"], "BASE_TYPE_REQUIRED", "This field is required")
            else:
                errors.required_text([*where, "custom_id"], button.get("custom_id"), 100)


def validate_message_body(
    body: Any, *, prefix: Sequence[str | int] = (), require_content: bool = True
) -> tuple[int, JSONDict, list[str]] | None:
    """Check a message create/edit body against Discord's limits.

    Returns None when Discord would accept it, else ``(code, errors, lines)`` with Discord's JSON error code
    (50035 invalid form body or 50006 empty message), its nested ``errors`` object and readable lines.
    Public so unit tests can check payloads (e.g. a renderer's embeds) without a server.
    """
    errors = _Errors()
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        errors.add(prefix, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return 50035, errors.tree, errors.lines
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        errors.add([*prefix, "content"], "STRING_TYPE_CONVERT", "Must be a string.")
    errors.max_length([*prefix, "content"], content, 2000)
    if body.get("embeds") is not None:
        _validate_embeds(body.get("embeds"), errors, prefix)
    if body.get("components") is not None:
        _validate_components(body.get("components"), errors, prefix)
    if errors:
        return 50035, errors.tree, errors.lines
    if require_content and not (content or body.get("embeds") or body.get("components") or body.get("sticker_ids")):
        return 50006, {}, ["Cannot send an empty message"]
    return None


_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")


def _validate_command(command: Any, errors: _Errors, prefix: list[str | int]) -> None:
    """Application command checks that make Discord refuse a sync: names, descriptions, option counts."""
    if not isinstance(command, Mapping):
        errors.add(prefix, "MODEL_TYPE_CONVERT", "Must be an object.")
        return
    ctype = command.get("type", 1)
    name = command.get("name")
    if ctype == 1:
        name_ok = isinstance(name, str) and bool(_COMMAND_NAME.match(name)) and name == name.lower()
    else:  # user and message commands may use spaces and capitals
        name_ok = isinstance(name, str) and 1 <= len(name) <= 32
    if not name_ok:
        errors.add([*prefix, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    description = command.get("description", "")
    if ctype == 1:
        errors.required_text([*prefix, "description"], description, 100)
    options = command.get("options") or []
    if len(options) > 25:
        errors.add([*prefix, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for i, option in enumerate(options):
        if isinstance(option, Mapping) and option.get("type") in (1, 2):
            _validate_command({**option, "type": 1}, errors, [*prefix, "options", i])
        elif isinstance(option, Mapping):
            opt_name = option.get("name")
            if not isinstance(opt_name, str) or not _COMMAND_NAME.match(opt_name) or opt_name != opt_name.lower():
                errors.add(
                    [*prefix, "options", i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
                )
            errors.required_text([*prefix, "options", i, "description"], option.get("description"), 100)
            if len(option.get("choices") or []) > 25:
                errors.add([*prefix, "options", i, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")


# -------------------------------------------------------------------------------------------------- gateway


class GatewayConnection:
    """One websocket connection to the fake gateway.

    Sends go through a lock because the transport compressor is a single stream shared by all frames of the
    connection (Discord's zlib-stream/zstd-stream): interleaved writers would corrupt it.
    """

    def __init__(
        self,
        connection_id: int,
        ws: web.WebSocketResponse,
        path: str,
        query: Mapping[str, str],
        compression: str | None,
        recorder: Callable[[GatewayFrame], None],
    ) -> None:
        self.id = connection_id
        self.ws = ws
        self.path = path
        """``/gateway`` for the first connection, ``/resume-gateway`` when the client used resume_gateway_url."""
        self.query = dict(query)
        self.compression = compression
        """``"zlib-stream"``, ``"zstd-stream"`` or None (plain text frames)."""
        self.session: GatewaySession | None = None
        self.heartbeats_received = 0
        self.heartbeat_acks = 0
        self.resumed = False
        self.close_code: int | None = None
        """The close code of this connection (the server's when it closed it, else the client's)."""
        self.closed_by_server = False
        self.closed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._record = recorder
        self._zlib = zlib.compressobj() if compression == "zlib-stream" else None
        self._zstd = _zstd.ZstdCompressor().compressobj() if compression == "zstd-stream" and _zstd else None

    @property
    def shard_id(self) -> int | None:
        """The shard this connection identified or resumed as."""
        return self.session.shard_id if self.session else None

    async def send(self, payload: JSONDict) -> bool:
        """Send one payload (compressed as negotiated); False if the socket is already gone."""
        text = json.dumps(payload, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                return False
            self._record(
                GatewayFrame(
                    self.id,
                    "sent",
                    payload.get("op"),
                    payload.get("t"),
                    payload.get("s"),
                    payload.get("d"),
                    time.monotonic(),
                )
            )
            try:
                if self._zlib is not None:
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                elif self._zstd is not None and _zstd is not None:
                    data = self._zstd.compress(text.encode()) + self._zstd.flush(_zstd.COMPRESSOBJ_FLUSH_BLOCK)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return False
        return True

    async def close(self, code: int, reason: str = "") -> None:
        """Close from the server side with ``code`` (e.g. 4004 authentication failed, 4014 disallowed intents)."""
        if self.ws.closed:
            return
        self.closed_by_server = True
        self.close_code = code
        async with self._lock:
            await self.ws.close(code=code, message=reason.encode())


# ----------------------------------------------------------------------------------------------- the server


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


_Handler = Callable[[RecordedRequest, "re.Match[str]"], Awaitable[_Reply]]


def _error(status: int, code: int, message: str, errors: JSONDict | None = None) -> _Reply:
    body: JSONDict = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return _Reply(status, body)


def _matcher(
    method: str | None, path: str | None, predicate: Callable[[RecordedRequest], bool] | None
) -> Callable[[RecordedRequest], bool]:
    """A request predicate from an HTTP method, a path regex (full match) and an extra predicate."""
    pattern = re.compile(path) if path else None

    def matches(request: RecordedRequest) -> bool:
        if method is not None and request.method != method.upper():
            return False
        if pattern is not None and not pattern.fullmatch(request.path):
            return False
        return predicate is None or predicate(request)

    return matches


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class FakeDiscord:
    """The fake Discord: REST under ``api_base``, gateway at ``gateway_url``, on 127.0.0.1 and a free port.

    Use as ``async with FakeDiscord(...) as fake:``. All recorded state is public: ``requests``, ``violations``,
    ``unknown_requests``, ``gateway_frames``, ``connections``, ``sessions``, ``commands``, ``messages``,
    ``channels``, ``interactions``, ``threads``.
    """

    def __init__(
        self,
        token: str = "fake-token",
        guilds: Sequence[FakeGuild] | None = None,
        *,
        shards: int = 1,
        heartbeat_interval_ms: int = 1000,
        compression: bool = True,
        bot_name: str = "citebot",
        enabled_privileged_intents: int = PRIVILEGED_INTENTS,
        interaction_response_timeout: float | None = 3.0,
        interaction_token_lifetime: float = 15 * 60,
        echo_bot_messages: bool = True,
        users: Sequence[FakeUser] = (),
    ) -> None:
        """Configure the fake; nothing listens until ``start()`` (or ``async with``).

        ``shards`` is what GET /gateway/bot recommends. ``heartbeat_interval_ms`` goes into HELLO.
        ``compression=False`` ignores the client's ``compress`` query and sends plain text frames.
        ``enabled_privileged_intents`` models the developer-portal switches: identifying with any other
        privileged intent closes the gateway with 4014. ``interaction_response_timeout`` is Discord's
        3-second acknowledgement deadline (None disables it); ``interaction_token_lifetime`` the 15 minutes after
        which an interaction's webhook refuses followups and edits. ``echo_bot_messages`` makes messages the bot
        creates come back as MESSAGE_CREATE/MESSAGE_UPDATE, as on real Discord.
        """
        self.token = token
        self.guilds: list[FakeGuild] = list(guilds) if guilds is not None else [FakeGuild()]
        self.shards = shards
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.compression = compression
        self.enabled_privileged_intents = enabled_privileged_intents
        self.interaction_response_timeout = interaction_response_timeout
        self.interaction_token_lifetime = interaction_token_lifetime
        self.echo_bot_messages = echo_bot_messages
        self.ack_heartbeats = True
        """Set False to simulate a zombie connection: heartbeats are then never acknowledged."""

        self.bot_user = FakeUser(bot_name, bot=True)
        self.application_id = self.bot_user.id
        self.owner = FakeUser("owner")
        self.default_user = FakeUser("alice")
        """The user that dispatched interactions and messages come from unless the test names another."""
        self._users: dict[str, FakeUser] = {}
        for user in (self.bot_user, self.owner, self.default_user, *users):
            self._users[user.id] = user
        for guild in self.guilds:
            if guild.owner_id is None:
                guild.owner_id = self.owner.id
            if all(m.id != self.default_user.id for m in guild.members):
                guild.members.append(self.default_user)
            for member in guild.members:
                self._users.setdefault(member.id, member)

        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.unknown_requests: list[RecordedRequest] = []
        self.rate_limit_rules: list[RateLimitRule] = []
        self.failure_rules: list[tuple[RateLimitRule, _Reply]] = []
        self._buckets: dict[str, tuple[float, int]] = {}
        self.gateway_frames: list[GatewayFrame] = []
        self.connections: list[GatewayConnection] = []
        self.sessions: dict[str, GatewaySession] = {}
        self.commands: dict[str | None, dict[str, JSONDict]] = {}
        self.foreign_guilds: set[str] = set()
        """Guilds that exist but the bot is not in (their commands answer 403); any other unknown id answers 404."""
        """Synced application commands: guild id (None for global) -> command id -> command object."""
        self.messages: dict[str, JSONDict] = {}
        """Every message the fake knows (sent by the bot or dispatched by a test), by id."""
        self.channels: dict[str, JSONDict] = {}
        """Channel objects by id: configured guild channels, threads the bot created, DMs."""
        self.threads: dict[str, JSONDict] = {}
        self.interactions: dict[str, FakeInteraction] = {}
        self.pings: dict[str, list[str]] = {}
        """Message id -> who a message the bot sent would notify ("user:<id>", "role:<id>", "everyone")."""
        self.presence_updates: list[JSONDict] = []

        self.attachment_files: dict[str, tuple[bytes, str]] = {}
        """Attachment id -> (content, content type) of files a test attached (see ``add_attachment``)."""
        self._channel_guild: dict[str, str | None] = {}
        self._shard_sessions: dict[int, GatewaySession] = {}
        self._tokens: dict[str, FakeInteraction] = {}
        self._identify_rejections: list[tuple[int, str]] = []
        self._tick = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        for guild in self.guilds:
            for channel in guild.channels:
                self.channels[channel.id] = self._channel_payload(guild, channel)
                self._channel_guild[channel.id] = guild.id
        self._routes = self._build_routes()

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a free port."""
        app = web.Application()
        app.router.add_get("/gateway", self._gateway_handler)
        app.router.add_get("/resume-gateway", self._gateway_handler)
        app.router.add_route("*", "/api/{version}/{tail:.*}", self._rest_handler)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._attachment_download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def close(self) -> None:
        """Close every gateway connection (1001, going away) and stop listening."""
        for conn in self.connections:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(1001, "fake discord shutting down"), 2.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The TCP port the fake listens on."""
        if self._port is None:
            raise RuntimeError("FakeDiscord is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must point at (also returned by GET /gateway/bot)."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    def bot_env(self) -> dict[str, str]:
        """The environment that points a `citebot discord` process at this fake (its token and first guild)."""
        return {
            "DISCORD_TOKEN": self.token,
            "CITEBOT_DISCORD_API_BASE": self.api_base,
            "CITEBOT_DISCORD_GATEWAY_URL": self.gateway_url,
            "CITEBOT_DISCORD_GUILD_ID": str(self.guild.id),
        }

    @property
    def resume_gateway_url(self) -> str:
        """Sent in READY; a distinct path so tests can see that the client resumed where it was told to."""
        return f"ws://127.0.0.1:{self.port}/resume-gateway"

    # -------------------------------------------------------------------------------------- convenience

    @property
    def guild(self) -> FakeGuild:
        """The first configured guild."""
        return self.guilds[0]

    @property
    def default_channel_id(self) -> str:
        """The first text channel of the first guild: where dispatched events happen unless told otherwise."""
        return self.guild.text_channels[0].id

    @property
    def heartbeat_acks(self) -> int:
        """Heartbeat ACKs sent over all connections."""
        return sum(c.heartbeat_acks for c in self.connections)

    def add_attachment(self, filename: str, content: bytes, content_type: str = "application/octet-stream") -> JSONDict:
        """An attachment a user uploaded, for a slash command's attachment option: pass the returned object's ``id``
        as the option value and ``{"attachments": {id: object}}`` as ``resolved``
        (https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-object-resolved-data-structure).
        Its ``url`` serves ``content``, like Discord's CDN does
        (https://discord.com/developers/docs/resources/message#attachment-object)."""
        attachment_id = snowflake()
        url = f"{self.base_url}/attachments/{attachment_id}/{filename}"
        self.attachment_files[attachment_id] = (content, content_type)
        return {
            "id": attachment_id,
            "filename": filename,
            "size": len(content),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }

    async def _attachment_download(self, request: web.Request) -> web.StreamResponse:
        stored = self.attachment_files.get(request.match_info["attachment_id"])
        if stored is None:
            return web.Response(status=404, text="404: Not Found")
        content, content_type = stored
        return web.Response(body=content, content_type=content_type)

    def add_user(self, user: FakeUser, guild: FakeGuild | None = None) -> FakeUser:
        """Register a user (and make it a member of ``guild``, if given) so mentions of it resolve."""
        self._users[user.id] = user
        if guild is not None and all(m.id != user.id for m in guild.members):
            guild.members.append(user)
        return user

    def connection_for_shard(self, shard_id: int = 0) -> GatewayConnection | None:
        """The live connection of a shard's current session, if any."""
        session = self._shard_sessions.get(shard_id)
        return session.connection if session else None

    def session_for_shard(self, shard_id: int = 0) -> GatewaySession | None:
        """The current (most recently identified) session of a shard."""
        return self._shard_sessions.get(shard_id)

    def requests_matching(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests with this method and whose path matches the regex ``path`` (full match)."""
        pattern = re.compile(path) if path else None
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (pattern is None or pattern.fullmatch(r.path))
        ]

    def synced_commands(self, guild_id: str | int | None = None) -> list[JSONDict]:
        """Commands the bot synced globally (None) or to a guild."""
        return list(self.commands.get(None if guild_id is None else str(guild_id), {}).values())

    def find_command(self, name: str, guild_id: str | int | None = None) -> JSONDict | None:
        """A synced command by name: the guild's first (if ``guild_id``), then global."""
        scopes: list[str | None] = [str(guild_id)] if guild_id is not None else []
        scopes.append(None)
        for scope in scopes:
            for command in self.commands.get(scope, {}).values():
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        return None

    def channel_messages(self, channel_id: str | int) -> list[JSONDict]:
        """Messages in a channel or thread, oldest first."""
        return [m for m in self.messages.values() if m["channel_id"] == str(channel_id)]

    def open_dm(self, user: FakeUser | None = None) -> JSONDict:
        """The DM channel with ``user`` (created if needed), so tests can dispatch DMs."""
        user = user or self.default_user
        self._users.setdefault(user.id, user)
        for channel in self.channels.values():
            if channel["type"] == CHANNEL_DM and channel["recipients"][0]["id"] == user.id:
                return channel
        channel = {"id": snowflake(), "type": CHANNEL_DM, "last_message_id": None, "recipients": [user.payload()]}
        self.channels[channel["id"]] = channel
        self._channel_guild[channel["id"]] = None
        return channel

    async def open_thread(
        self,
        parent_id: str | int,
        owner: FakeUser | None = None,
        name: str = "a thread",
        content: str | None = None,
        *,
        from_message: str | None = None,
    ) -> JSONDict:
        """A thread someone else started (``owner``, default the default user): from a message (it then has the
        message's id), or on its own; in a forum, with its post.

        A forum holds only threads; a post's first message has the thread's id
        (https://discord.com/developers/docs/resources/channel#start-thread-in-forum-or-media-channel).
        """
        parent = self.channels[str(parent_id)]
        owner = owner or self.default_user
        thread_id = from_message or snowflake()
        thread = self._new_thread(parent, thread_id, CHANNEL_PUBLIC_THREAD, {"name": name}, owner)
        guild_id = parent.get("guild_id")
        await self._dispatch_to(self._session_for_guild(guild_id), "THREAD_CREATE", {**thread, "newly_created": True})
        if parent["type"] == CHANNEL_FORUM:
            post = self._make_message(thread["id"], {"content": content or name}, owner)
            post["id"] = thread["id"]
            self._store_message(post)
            await self._dispatch_to(self._session_for_guild(guild_id), "MESSAGE_CREATE", post)
        return thread

    async def delete_message(self, message_id: str | int) -> None:
        """Someone deleted a message: it is gone, and the bot is told (MESSAGE_DELETE)."""
        message = self.messages.pop(str(message_id))
        guild_id = self._channel_guild.get(message["channel_id"])
        data = {"id": message["id"], "channel_id": message["channel_id"], "guild_id": guild_id}
        await self._dispatch_to(self._session_for_guild(guild_id), "MESSAGE_DELETE", data)

    # ------------------------------------------------------------------------------------- fault injection

    def rate_limit(
        self,
        count: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        retry_after: float = 0.3,
        is_global: bool = False,
        scope: str = "user",
    ) -> RateLimitRule:
        """Make the next ``count`` requests matching method/path regex/predicate answer 429.

        The 429 carries ``Via: 1.1 google`` because discord.py treats a 429 without it as a Cloudflare ban and
        raises instead of retrying. Returns the rule; its ``hits`` lists the requests that got a 429.
        """
        rule = RateLimitRule(_matcher(method, path, predicate), count, retry_after, is_global, scope)
        self.rate_limit_rules.append(rule)
        return rule

    def fail_next(
        self, count: int = 1, *, method: str | None = None, path: str | None = None, status: int = 500, code: int = 0
    ) -> RateLimitRule:
        """Make the next ``count`` matching requests fail with ``status`` (e.g. a 500, or a 403 50013)."""
        rule = RateLimitRule(_matcher(method, path, None), count, 0.0, False, "")
        self.failure_rules.append((rule, _error(status, code, f"{status}: injected failure")))
        return rule

    def reject_next_identify(self, code: int = 4014, reason: str = "Disallowed intent(s).") -> None:
        """Close the next IDENTIFY's connection with ``code`` (4004 auth failed, 4014 disallowed intents, ...)."""
        self._identify_rejections.append((code, reason))

    async def send_reconnect(self, shard_id: int = 0) -> GatewayConnection:
        """Send op 7 RECONNECT on a shard's connection; the client should close it and RESUME."""
        conn = self._require_connection(shard_id)
        await conn.send({"op": 7, "d": None})
        return conn

    async def close_gateway(self, code: int = 4000, reason: str = "", shard_id: int = 0) -> GatewayConnection:
        """Close a shard's connection with ``code``; 4000-4009 leave the session resumable, 4004/4010-4014 don't."""
        conn = self._require_connection(shard_id)
        await conn.close(code, reason)
        return conn

    async def invalidate_session(self, resumable: bool = False, shard_id: int = 0) -> GatewayConnection:
        """Send op 9 INVALID_SESSION; with ``resumable=False`` the session is forgotten and must re-IDENTIFY."""
        conn = self._require_connection(shard_id)
        if not resumable and conn.session is not None:
            self._end_session(conn.session)
        await conn.send({"op": 9, "d": resumable})
        return conn

    def _require_connection(self, shard_id: int) -> GatewayConnection:
        conn = self.connection_for_shard(shard_id)
        if conn is None:
            raise RuntimeError(f"shard {shard_id} has no live gateway connection")
        return conn

    # ----------------------------------------------------------------------------------- event injection

    async def dispatch(self, event: str, data: JSONDict, *, guild_id: str | int | None = None) -> int:
        """Dispatch any gateway event to the shard that owns ``guild_id`` (shard 0 without one); returns its seq.

        If the shard is between connections the event is buffered and replayed on RESUME, like Discord does.
        """
        session = self._session_for_guild(None if guild_id is None else str(guild_id))
        return await self._dispatch_to(session, event, data)

    async def dispatch_slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | Sequence[JSONDict] | None = None,
        guild_id: str | int | None = None,
        channel_id: str | int | None = None,
        user: FakeUser | None = None,
        *,
        require_synced: bool = True,
        resolved: JSONDict | None = None,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE for a chat-input command, as if ``user`` ran ``/name``.

        ``options`` is either ``{"option": value}`` (types come from the synced command, else from the Python
        value) or raw interaction options. The command id (and ``data.guild_id`` for guild commands) comes from
        what the bot synced; with ``require_synced=False`` an unsynced command is sent as a global one.
        Defaults: the channel's guild, else the first guild, and its first text channel.
        """
        channel_id, guild_id = self._resolve_place(channel_id, guild_id)
        command = self.find_command(name, guild_id)
        if command is None and require_synced:
            raise KeyError(f"command {name!r} was never synced (synced: {self._synced_names()})")
        raw_options = self._command_options(command, options)
        self._check_option_lengths(command, raw_options)
        data: JSONDict = {"id": command["id"] if command else snowflake(), "name": name, "type": 1}
        if raw_options:
            data["options"] = raw_options
        if resolved:
            data["resolved"] = resolved
        if command is not None and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return await self._dispatch_interaction(2, data, guild_id, channel_id, user)

    @staticmethod
    def _check_option_lengths(command: JSONDict | None, options: Sequence[JSONDict]) -> None:
        """Discord's client refuses to send a string option outside the command's min_length/max_length, so no
        such interaction can ever reach a bot
        (https://discord.com/developers/docs/interactions/application-commands#application-command-object-application-command-option-structure)."""
        declared = {o["name"]: o for o in (command or {}).get("options", [])}
        for option in options:
            spec, value = declared.get(option["name"], {}), option.get("value")
            if isinstance(value, str) and not spec.get("min_length", 0) <= len(value) <= spec.get("max_length", 6000):
                raise ValueError(
                    f"Discord would not send /{(command or {}).get('name')} with {option['name']!r} of {len(value)} "
                    f"characters (min_length {spec.get('min_length')}, max_length {spec.get('max_length')})"
                )

    async def dispatch_component_click(
        self,
        message_id: str | int,
        custom_id: str,
        user: FakeUser | None = None,
        *,
        component_type: int = 2,
        values: Sequence[str] | None = None,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE type 3: ``user`` clicked the component ``custom_id`` on a known message.

        ``component_type`` 2 is a button; pass 3 with ``values`` for a string select.
        """
        message = self.messages.get(str(message_id))
        if message is None:
            raise KeyError(f"unknown message {message_id}: the fake only knows messages it created or dispatched")
        data: JSONDict = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        channel_id = message["channel_id"]
        return await self._dispatch_interaction(
            3, data, self._channel_guild.get(channel_id), channel_id, user, message=message
        )

    async def dispatch_message(
        self,
        content: str,
        channel_id: str | int | None = None,
        author: FakeUser | None = None,
        mentions: Sequence[FakeUser] = (),
        *,
        mention_bot: bool = False,
        reply_to: str | int | None = None,
        embeds: Sequence[JSONDict] = (),
    ) -> JSONDict:
        """Dispatch MESSAGE_CREATE as if ``author`` wrote ``content`` in a channel, thread or DM.

        Mentions are parsed from ``<@id>`` in ``content`` like Discord does, plus ``mentions``;
        ``mention_bot=True`` lists the bot without changing the text. Returns the message object (its ``id``
        can be used for threads, replies and component clicks).
        """
        channel_id, guild_id = self._resolve_place(channel_id, None)
        author = author or self.default_user
        self._users.setdefault(author.id, author)
        extra = list(mentions) + ([self.bot_user] if mention_bot else [])
        body: JSONDict = {"content": content, "embeds": list(embeds)}
        if reply_to is not None:
            body["message_reference"] = {"message_id": str(reply_to), "channel_id": channel_id}
        message = self._make_message(channel_id, body, author, extra_mentions=extra)
        self._store_message(message)
        await self._dispatch_to(self._session_for_guild(guild_id), "MESSAGE_CREATE", message)
        return message

    # ------------------------------------------------------------------------------------------- waiting

    async def _wait(self, find: Callable[[], T | None], timeout: float, what: Callable[[], str]) -> T:
        """Re-run ``find`` whenever something is recorded, until it returns non-None or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            result = find()
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FakeDiscordTimeout(f"timed out after {timeout}s waiting for {what()}")
            tick = self._tick
            with contextlib.suppress(TimeoutError):
                # Also poll, so conditions on state outside the fake (the client's caches) are re-checked.
                await asyncio.wait_for(tick.wait(), min(remaining, 0.1))

    def _bump(self) -> None:
        """Wake every waiter; synchronous so it can run from any recording site."""
        self._tick.set()
        self._tick = asyncio.Event()

    def _describe_recent(self) -> str:
        recent = [f"{r.method} {r.path} -> {r.status}" for r in self.requests[-8:]]
        return f"a matching request; recent requests: {recent}"

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = 10.0, *, since: int = 0
    ) -> RecordedRequest:
        """The first *answered* request (index >= ``since``) matching ``predicate``, waiting up to ``timeout``.

        Requests that arrived before the call count too, so a fast bot cannot race the test.
        Raises FakeDiscordTimeout (an AssertionError) listing recent requests.
        """

        def find() -> RecordedRequest | None:
            return next((r for r in self.requests[since:] if r.done and predicate(r)), None)

        return await self._wait(find, timeout, self._describe_recent)

    async def wait_for_gateway(
        self, predicate: Callable[[GatewayFrame], bool], timeout: float = 10.0, *, since: int = 0
    ) -> GatewayFrame:
        """The first gateway frame (index >= ``since``, either direction) matching ``predicate``."""

        def find() -> GatewayFrame | None:
            return next((f for f in self.gateway_frames[since:] if predicate(f)), None)

        def what() -> str:
            recent = [(f.direction, f.op, f.t) for f in self.gateway_frames[-8:]]
            return f"a matching gateway frame; recent frames: {recent}"

        return await self._wait(find, timeout, what)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        """Wait until ``condition()`` holds; re-checked whenever a request or gateway frame is recorded."""
        await self._wait(lambda: True if condition() else None, timeout, lambda: what)

    async def wait_for_callback(self, interaction: FakeInteraction, timeout: float = 10.0) -> RecordedRequest:
        """The bot's (answered) callback request for ``interaction``."""
        return await self.wait_for_request(
            lambda r: r.method == "POST" and r.path == interaction.callback_path, timeout
        )

    async def wait_for_followup(
        self, interaction: FakeInteraction, timeout: float = 10.0, *, successful: bool = True
    ) -> RecordedRequest:
        """The bot's first followup message for ``interaction`` (by default: one the fake accepted)."""
        return await self.wait_for_request(
            lambda r: (
                r.method == "POST" and r.path == interaction.webhook_path and (not successful or (r.status or 0) < 300)
            ),
            timeout,
        )

    async def wait_for_original_edit(
        self, interaction: FakeInteraction, timeout: float = 10.0, *, successful: bool = True
    ) -> RecordedRequest:
        """The bot's first edit of the original response (e.g. filling in a deferred answer)."""
        path = interaction.webhook_path + "/messages/@original"
        return await self.wait_for_request(
            lambda r: r.method == "PATCH" and r.path == path and (not successful or (r.status or 0) < 300), timeout
        )

    async def wait_for_channel_message(
        self, channel_id: str | int, timeout: float = 10.0, predicate: Callable[[JSONDict], bool] | None = None
    ) -> JSONDict:
        """The first message the bot created in a channel or thread (optionally matching ``predicate``)."""
        channel = str(channel_id)

        def find() -> JSONDict | None:
            return next(
                (
                    m
                    for m in self.messages.values()
                    if m["channel_id"] == channel
                    and m["author"]["id"] == self.bot_user.id
                    and (predicate is None or predicate(m))
                ),
                None,
            )

        return await self._wait(find, timeout, lambda: f"a bot message in channel {channel}")

    async def wait_for_session(self, shard_id: int = 0, timeout: float = 10.0) -> GatewaySession:
        """The shard's session once READY has been sent on a live connection."""

        def find() -> GatewaySession | None:
            session = self._shard_sessions.get(shard_id)
            return session if session is not None and session.connection is not None else None

        return await self._wait(find, timeout, lambda: f"shard {shard_id} to identify")

    # ---------------------------------------------------------------------------------------- REST plumbing

    def _build_routes(self) -> list[tuple[frozenset[str], re.Pattern[str], _Handler]]:
        table: list[tuple[str, str, _Handler]] = [
            ("GET", r"/gateway", self._get_gateway),
            ("GET", r"/gateway/bot", self._get_gateway_bot),
            ("GET", r"/users/@me", self._get_me),
            ("GET", r"/(?:oauth2/)?applications/@me", self._get_application),
            ("GET PUT", r"/applications/(\d+)(?:/guilds/(\d+))?/commands", self._commands),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._interaction_callback),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._webhook_execute),
            ("GET PATCH DELETE", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._webhook_message),
            ("GET", r"/channels/(\d+)", self._get_channel),
            ("GET", r"/channels/(\d+)/messages", self._get_messages),
            ("POST", r"/channels/(\d+)/messages", self._post_message),
            ("GET PATCH DELETE", r"/channels/(\d+)/messages/(\d+)", self._channel_message),
            ("POST", r"/channels/(\d+)/messages/(\d+)/threads", self._thread_from_message),
            ("POST", r"/channels/(\d+)/typing", self._typing),
        ]
        return [(frozenset(methods.split()), re.compile(pattern), handler) for methods, pattern, handler in table]

    @staticmethod
    async def _read_body(request: web.Request) -> Any:
        """The JSON body (the fake models no file uploads: bots that answer in text send none)."""
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    async def _rest_handler(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_body(request)
        record = RecordedRequest(
            index=len(self.requests),
            method=request.method,
            path="/" + request.match_info["tail"],
            query=dict(request.query),
            json=body,
            headers={k: v for k, v in request.headers.items() if k.lower() not in ("authorization",)},
            time=time.monotonic(),
        )
        self.requests.append(record)
        reply = await self._route(request, record)
        record.status = reply.status
        record.response = reply.body
        self._bump()
        headers = dict(reply.headers)
        if reply.body is None:
            return web.Response(status=reply.status, headers=headers)
        # Exactly "application/json": discord.py's json_or_text compares the header verbatim, and aiohttp's
        # json_response would append "; charset=utf-8", turning every answer into a plain string.
        headers["Content-Type"] = "application/json"
        return web.Response(status=reply.status, body=json.dumps(reply.body).encode(), headers=headers)

    async def _route(self, request: web.Request, record: RecordedRequest) -> _Reply:
        for methods, pattern, handler in self._routes:
            match = pattern.fullmatch(record.path)
            if match is None or record.method not in methods:
                continue
            webhook_route = handler in (self._interaction_callback, self._webhook_execute, self._webhook_message)
            auth = request.headers.get("Authorization")
            # Interaction and webhook-token routes need no Authorization (discord.py sends none); all others do.
            if (auth is not None or not webhook_route) and auth != f"Bot {self.token}":
                return _error(401, 0, "401: Unauthorized")
            limited = self._rate_limited(record)
            if limited is not None:
                return limited
            for rule, failure in self.failure_rules:
                if rule.remaining > 0 and rule.predicate(record):
                    rule.remaining -= 1
                    rule.hits.append(record)
                    return failure
            reply = await handler(record, match)
            reply.headers.update(self._bucket_headers(record, pattern, match))
            return reply
        self.unknown_requests.append(record)
        return _error(404, 0, "Unknown")

    def _bucket_headers(
        self, record: RecordedRequest, pattern: re.Pattern[str], match: re.Match[str]
    ) -> dict[str, str]:
        """Discord's rate-limit headers, sent on every response: one bucket per route and major parameter,
        BUCKET_LIMIT requests per BUCKET_SECONDS window
        (https://discord.com/developers/docs/topics/rate-limits#header-format)."""
        key = f"{record.method} {pattern.pattern} {match[1] if match.groups() else ''}"
        started, used = self._buckets.get(key, (record.time, 0))
        if record.time - started >= BUCKET_SECONDS:
            started, used = record.time, 0
        used += 1
        self._buckets[key] = (started, used)
        reset_after = max(BUCKET_SECONDS - (record.time - started), 0.0)
        return {
            "X-RateLimit-Limit": str(BUCKET_LIMIT),
            "X-RateLimit-Remaining": str(max(BUCKET_LIMIT - used, 0)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:16],
        }

    def _rate_limited(self, record: RecordedRequest) -> _Reply | None:
        for rule in self.rate_limit_rules:
            if rule.remaining > 0 and rule.predicate(record):
                rule.remaining -= 1
                rule.hits.append(record)
                reset = time.time() + rule.retry_after
                headers = {
                    "Via": "1.1 google",
                    "Retry-After": str(max(1, int(rule.retry_after + 0.999))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{reset:.3f}",
                    "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}",
                    "X-RateLimit-Bucket": "fake-" + uuid.uuid5(uuid.NAMESPACE_URL, record.path).hex[:16],
                    "X-RateLimit-Scope": "global" if rule.is_global else rule.scope,
                }
                if rule.is_global:
                    headers["X-RateLimit-Global"] = "true"
                body = {
                    "message": "You are being rate limited.",
                    "retry_after": rule.retry_after,
                    "global": rule.is_global,
                }
                return _Reply(429, body, headers)
        return None

    def _violation(self, record: RecordedRequest, code: int, errors: JSONDict, lines: list[str]) -> None:
        self.violations.append(Violation(record, code, errors, lines))

    def _invalid(self, record: RecordedRequest, result: tuple[int, JSONDict, list[str]]) -> _Reply:
        code, errors, lines = result
        self._violation(record, code, errors, lines)
        if code == 50006:
            return _error(400, 50006, "Cannot send an empty message")
        return _error(400, 50035, "Invalid Form Body", errors)

    def _refuse(self, record: RecordedRequest, status: int, code: int, message: str) -> _Reply:
        """A 4xx that means the bot misbehaved: answered like Discord does and recorded as a violation."""
        self._violation(record, code, {}, [message])
        return _error(status, code, message)

    # ----------------------------------------------------------------------------------------- REST: misc

    async def _get_gateway(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        return _Reply(200, {"url": self.gateway_url})

    async def _get_gateway_bot(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        return _Reply(
            200,
            {
                "url": self.gateway_url,
                "shards": self.shards,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            },
        )

    async def _get_me(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        return _Reply(200, {**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "locale": "en-US"})

    def _application_payload(self) -> JSONDict:
        flags = 0
        if self.enabled_privileged_intents & INTENT_MESSAGE_CONTENT:
            flags |= 1 << 19  # GATEWAY_MESSAGE_CONTENT_LIMITED (verified bots use 1 << 18)
        if self.enabled_privileged_intents & INTENT_GUILD_MEMBERS:
            flags |= 1 << 15
        return {
            "id": self.application_id,
            "name": self.bot_user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.owner.payload(),
            "team": None,
            "verify_key": "0" * 64,
            "flags": flags,
            "bot": self.bot_user.payload(),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "approximate_guild_count": len(self.guilds),
        }

    async def _get_application(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        return _Reply(200, self._application_payload())

    async def _typing(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        if match[1] not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        return _Reply(204)

    # ------------------------------------------------------------------------------ REST: app commands

    def _check_application(self, app_id: str) -> _Reply | None:
        return None if app_id == self.application_id else _error(403, 50001, "Missing Access")

    def _store_command(self, guild_id: str | None, command: JSONDict) -> JSONDict:
        scope = self.commands.setdefault(guild_id, {})
        ctype = command.get("type", 1)
        existing = next((c for c in scope.values() if c["name"] == command.get("name") and c["type"] == ctype), None)
        stored: JSONDict = {
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "options": [],
            "description": "",
            **command,
            "id": existing["id"] if existing else snowflake(),
            "application_id": self.application_id,
            "type": ctype,
            "version": snowflake(),
        }
        if guild_id is not None:
            stored["guild_id"] = guild_id
        scope[stored["id"]] = stored
        return stored

    async def _commands(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        denied = self._check_application(match[1])
        if denied:
            return denied
        guild_id = match[2]
        if guild_id is not None and self._guild_by_id(guild_id) is None:
            # https://discord.com/developers/docs/topics/opcodes-and-status-codes#json: a guild the bot is not in is
            # 50001 Missing Access (403); an id no guild has is 10004 Unknown Guild (404).
            if guild_id in self.foreign_guilds:
                return _error(403, 50001, "Missing Access")
            return _error(404, 10004, "Unknown Guild")
        if record.method == "GET":
            return _Reply(200, self.synced_commands(guild_id))
        body = record.json
        errors = _Errors()
        if record.method == "PUT":
            if not isinstance(body, list):
                errors.add([], "LIST_TYPE_CONVERT", "Must be an array.")
            else:
                if len(body) > 100:
                    errors.add([], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
                for i, command in enumerate(body):
                    _validate_command(command, errors, [i])
            if errors:
                return self._invalid(record, (50035, errors.tree, errors.lines))
            old = self.commands.get(guild_id, {})
            self.commands[guild_id] = {}
            result = []
            for command in body:
                previous = next(
                    (
                        c
                        for c in old.values()
                        if c["name"] == command.get("name") and c["type"] == command.get("type", 1)
                    ),
                    None,
                )
                if previous is not None:
                    self.commands[guild_id][previous["id"]] = previous
                result.append(self._store_command(guild_id, command))
            return _Reply(200, result)
        return _error(405, 0, "405: Method Not Allowed")

    # ------------------------------------------------------------------------------ REST: interactions

    def _interaction_message(self, interaction: FakeInteraction, body: JSONDict) -> JSONDict:
        message_type = 20 if interaction.type == 2 else 0
        message = self._make_message(
            interaction.channel_id or "0",
            body,
            self.bot_user,
            message_type=message_type,
            webhook_id=self.application_id,
        )
        message["application_id"] = self.application_id
        user = interaction.payload.get("member", {}).get("user") or interaction.payload.get("user")
        message["interaction_metadata"] = {
            "id": interaction.id,
            "type": interaction.type,
            "user": user,
            "authorizing_integration_owners": interaction.payload.get("authorizing_integration_owners", {}),
        }
        return message

    async def _interaction_callback(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        interaction = self.interactions.get(match[1])
        if interaction is None or interaction.token != match[2]:
            return self._refuse(record, 404, 10062, "Unknown interaction")
        body = record.json if isinstance(record.json, dict) else {}
        if interaction.responded:
            return self._refuse(record, 400, 40060, "Interaction has already been acknowledged.")
        elapsed = record.time - interaction.created
        if self.interaction_response_timeout is not None and elapsed > self.interaction_response_timeout:
            self._violation(
                record,
                10062,
                {},
                [
                    f"Unknown interaction: acknowledged after {elapsed:.2f}s "
                    f"(limit {self.interaction_response_timeout}s)"
                ],
            )
            return _error(404, 10062, "Unknown interaction")
        rtype = body.get("type")
        raw_data = body.get("data")
        data: JSONDict = raw_data if isinstance(raw_data, dict) else {}
        component_only = interaction.type == 3
        problem: str | None = None
        if rtype not in (4, 5, 6, 7):
            problem = f"Interaction callback type {rtype!r} is invalid here (the fake models 4, 5, 6 and 7)"
        elif rtype in (6, 7) and not component_only:
            problem = "UPDATE_MESSAGE callbacks are only valid for component interactions"
        if problem is not None:
            errors = _Errors()
            errors.add(["type"], "INTERACTION_CALLBACK_TYPE_INVALID", problem)
            return self._invalid(record, (50035, errors.tree, errors.lines))
        if rtype in (4, 7):
            invalid = validate_message_body(data, prefix=["data"], require_content=rtype == 4)
            if invalid:
                return self._invalid(record, invalid)

        interaction.response_type = rtype
        resource: JSONDict = {"type": rtype}
        ephemeral = bool(int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL)
        message: JSONDict | None = None
        if rtype == 4:
            message = self._interaction_message(interaction, data)
            self._record_pings(message, data)
        elif rtype == 5:
            flags = (int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL) | MESSAGE_FLAG_LOADING
            message = self._interaction_message(interaction, {"content": "", "flags": flags})
        elif rtype in (6, 7):
            source = interaction.payload.get("message") or {}
            message = self.messages.get(str(source.get("id")))
            if message is not None and rtype == 7:
                self._apply_edit(message, data)
                await self._echo("MESSAGE_UPDATE", message)
        if message is not None:
            if rtype in (4, 5):
                self._store_message(message)
                await self._echo("MESSAGE_CREATE", message)
            interaction.original_message_id = message["id"]
            resource["message"] = message
        if not _truthy(record.query.get("with_response")):
            return _Reply(204)
        callback = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.type,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": rtype == 5,
                "response_message_ephemeral": ephemeral,
            },
            "resource": resource,
        }
        return _Reply(200, callback)

    def _webhook_interaction(self, record: RecordedRequest, app_id: str, token: str) -> FakeInteraction | _Reply:
        """The interaction a webhook route's token belongs to, or Discord's refusal.

        "Interaction tokens are valid for 15 minutes": after that the webhook answers 401 Invalid Webhook Token
        (https://discord.com/developers/docs/interactions/receiving-and-responding#followup-messages).
        """
        interaction = self._tokens.get(token)
        if interaction is None or app_id != self.application_id:
            return self._refuse(record, 404, 10015, "Unknown Webhook")
        if record.time - interaction.created > self.interaction_token_lifetime:
            return self._refuse(record, 401, 50027, "Invalid Webhook Token")
        return interaction

    async def _webhook_execute(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        """A followup. After a deferred "thinking" response (type 5) the first followup does not create a message:
        it replaces the loading one, which keeps the defer's ephemerality whatever the followup's flags say
        (https://discord.com/developers/docs/interactions/receiving-and-responding#create-followup-message)."""
        interaction = self._webhook_interaction(record, match[1], match[2])
        if isinstance(interaction, _Reply):
            return interaction
        if not interaction.responded:
            return self._refuse(
                record, 404, 10015, "Unknown Webhook (followup sent before the interaction was acknowledged)"
            )
        body = record.json if isinstance(record.json, dict) else {}
        invalid = validate_message_body(body)
        if invalid:
            return self._invalid(record, invalid)
        original = self.messages.get(interaction.original_message_id or "")
        if original is not None and int(original.get("flags") or 0) & MESSAGE_FLAG_LOADING:
            self._apply_edit(original, {key: value for key, value in body.items() if key != "flags"})
            message = original
            self._record_pings(message, body)
            await self._echo("MESSAGE_UPDATE", message)
        else:
            message = self._interaction_message(interaction, body)
            self._record_pings(message, body)
            self._store_message(message)
            await self._echo("MESSAGE_CREATE", message)
        interaction.followup_ids.append(message["id"])
        if not _truthy(record.query.get("wait")):
            return _Reply(204)
        return _Reply(200, message)

    async def _webhook_message(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        interaction = self._webhook_interaction(record, match[1], match[2])
        if isinstance(interaction, _Reply):
            return interaction
        message_id = interaction.original_message_id if match[3] == "@original" else match[3]
        owned = message_id is not None and (
            message_id == interaction.original_message_id or message_id in interaction.followup_ids
        )
        message = self.messages.get(message_id) if owned and message_id is not None else None
        if message is None:
            if record.method == "GET":
                return _error(404, 10008, "Unknown Message")
            return self._refuse(record, 404, 10008, "Unknown Message")
        if record.method == "GET":
            return _Reply(200, message)
        if record.method == "DELETE":
            self.messages.pop(message["id"], None)
            await self._echo("MESSAGE_DELETE", message)
            return _Reply(204)
        body = record.json if isinstance(record.json, dict) else {}
        invalid = validate_message_body(body, require_content=False)
        if invalid:
            return self._invalid(record, invalid)
        self._apply_edit(message, body)
        self._record_pings(message, body)
        await self._echo("MESSAGE_UPDATE", message)
        return _Reply(200, message)

    # ---------------------------------------------------------------------------------- REST: channels

    async def _get_channel(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        channel = self.channels.get(match[1])
        return _Reply(200, channel) if channel else _error(404, 10003, "Unknown Channel")

    async def _get_messages(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        if match[1] not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        denied = self._missing_permissions(match[1], VIEW_CHANNEL)
        if denied is not None:
            return denied
        # https://discord.com/developers/docs/resources/message#get-channel-messages: without Read Message
        # History "no messages will be returned".
        if not self._permissions(match[1]) & READ_MESSAGE_HISTORY:
            return _Reply(200, [])
        messages = list(reversed(self.channel_messages(match[1])))
        before, after = record.query.get("before"), record.query.get("after")
        if before:
            messages = [m for m in messages if int(m["id"]) < int(before)]
        if after:
            messages = [m for m in messages if int(m["id"]) > int(after)]
        limit = int(record.query.get("limit", "50"))
        return _Reply(200, messages[:limit])

    async def _post_message(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        channel_id = match[1]
        channel = self.channels.get(channel_id)
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if channel["type"] in THREAD_TYPES and channel["thread_metadata"].get("locked"):
            return self._refuse(record, 400, 160005, "Thread is locked")
        body = record.json if isinstance(record.json, dict) else {}
        # https://discord.com/developers/docs/resources/message#create-message: Send Messages (in a thread: Send
        # Messages in Threads), and Read Message History for a reply.
        send = SEND_MESSAGES_IN_THREADS if channel["type"] in THREAD_TYPES else SEND_MESSAGES
        history = READ_MESSAGE_HISTORY if body.get("message_reference") else 0
        denied = self._missing_permissions(channel_id, VIEW_CHANNEL | send | history)
        if denied is not None:
            return denied
        invalid = validate_message_body(body)
        if invalid:
            return self._invalid(record, invalid)
        reference = body.get("message_reference")
        if (
            isinstance(reference, dict)
            and reference.get("message_id")
            and str(reference["message_id"]) not in self.messages
            and reference.get("fail_if_not_exists", True)
        ):
            errors = _Errors()
            errors.add(["message_reference"], "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
            return self._invalid(record, (50035, errors.tree, errors.lines))
        message = self._make_message(channel_id, body, self.bot_user)
        self._record_pings(message, body)
        self._store_message(message)
        await self._echo("MESSAGE_CREATE", message)
        return _Reply(200, message)

    async def _channel_message(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        message = self.messages.get(match[2])
        if match[1] not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        if message is None or message["channel_id"] != match[1]:
            return _error(404, 10008, "Unknown Message")
        if record.method == "GET":
            denied = self._missing_permissions(match[1], VIEW_CHANNEL | READ_MESSAGE_HISTORY)
            return denied or _Reply(200, message)
        if record.method == "DELETE":
            del self.messages[message["id"]]
            await self._echo("MESSAGE_DELETE", message)
            return _Reply(204)
        if message["author"]["id"] != self.bot_user.id:
            return self._refuse(record, 403, 50005, "Cannot edit a message authored by another user")
        body = record.json if isinstance(record.json, dict) else {}
        invalid = validate_message_body(body, require_content=False)
        if invalid:
            return self._invalid(record, invalid)
        self._apply_edit(message, body)
        self._record_pings(message, body)
        await self._echo("MESSAGE_UPDATE", message)
        return _Reply(200, message)

    def _validate_thread_body(self, body: JSONDict) -> _Errors:
        errors = _Errors()
        errors.required_text(["name"], body.get("name"), 100)
        duration = body.get("auto_archive_duration")
        if duration is not None and duration not in (60, 1440, 4320, 10080):
            errors.add(["auto_archive_duration"], "BASE_TYPE_CHOICES", "Value must be one of {60, 1440, 4320, 10080}.")
        return errors

    async def _create_thread(self, record: RecordedRequest, parent_id: str, thread_id: str, ttype: int) -> _Reply:
        parent = self.channels.get(parent_id)
        if parent is None:
            return _error(404, 10003, "Unknown Channel")
        if parent["type"] not in (CHANNEL_TEXT, CHANNEL_NEWS):
            return self._refuse(record, 400, 50024, "Cannot execute action on this channel type")
        denied = self._missing_permissions(parent_id, VIEW_CHANNEL | CREATE_PUBLIC_THREADS)
        if denied is not None:
            return denied
        body = record.json if isinstance(record.json, dict) else {}
        errors = self._validate_thread_body(body)
        if errors:
            return self._invalid(record, (50035, errors.tree, errors.lines))
        thread = self._new_thread(parent, thread_id, ttype, body, self.bot_user)
        await self._echo("THREAD_CREATE", {**thread, "newly_created": True})
        return _Reply(201, thread)

    def _new_thread(self, parent: JSONDict, thread_id: str, ttype: int, body: JSONDict, owner: FakeUser) -> JSONDict:
        now = _now_iso()
        thread: JSONDict = {
            "id": thread_id,
            "type": ttype,
            "guild_id": parent.get("guild_id"),
            "parent_id": parent["id"],
            "owner_id": owner.id,
            "name": body["name"],
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "rate_limit_per_user": body.get("rate_limit_per_user", 0),
            "flags": 0,
            "applied_tags": [],
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": body.get("auto_archive_duration") or 1440,
                "archive_timestamp": now,
                "locked": False,
                "invitable": body.get("invitable", True),
                "create_timestamp": now,
            },
        }
        if owner is self.bot_user:  # the thread member object of the current user, when it is in the thread
            thread["member"] = {"id": thread_id, "user_id": owner.id, "join_timestamp": now, "flags": 0}
        self.channels[thread_id] = thread
        self.threads[thread_id] = thread
        self._channel_guild[thread_id] = parent.get("guild_id")
        return thread

    async def _thread_from_message(self, record: RecordedRequest, match: re.Match[str]) -> _Reply:
        """Discord gives a thread started from a message the message's own id, so the fake does too."""
        message = self.messages.get(match[2])
        if match[1] in self.channels and (message is None or message["channel_id"] != match[1]):
            return _error(404, 10008, "Unknown Message")
        if match[2] in self.channels:
            return _error(400, 160004, "A thread has already been created for this message")
        ttype = CHANNEL_PUBLIC_THREAD if self.channels.get(match[1], {}).get("type") == CHANNEL_TEXT else 10
        reply = await self._create_thread(record, match[1], match[2], ttype)
        if reply.status < 300 and message is not None:
            message["thread"] = reply.body
            message["flags"] = int(message.get("flags") or 0) | MESSAGE_FLAG_HAS_THREAD
        return reply

    def _permissions(self, channel_id: str) -> int:
        """The bot's permissions in a channel: @everyone's, minus the channel's overwrite for the bot; a thread
        has its parent's (https://discord.com/developers/docs/topics/permissions#permission-overwrites)."""
        channel = self.channels.get(channel_id, {})
        if channel.get("type") in THREAD_TYPES:
            channel = self.channels.get(channel["parent_id"], {})
        guild = self._guild_by_id(channel.get("guild_id"))
        if guild is None:  # a DM
            return DEFAULT_PERMISSIONS
        denied = sum(int(o["deny"]) for o in channel.get("permission_overwrites", []) if o["id"] == self.bot_user.id)
        return guild.everyone_permissions & ~denied

    def _missing_permissions(self, channel_id: str, needed: int) -> _Reply | None:
        """403 Missing Permissions (50013) unless the bot has all of ``needed`` in the channel."""
        if self._permissions(channel_id) & needed != needed:
            return _error(403, 50013, "Missing Permissions")
        return None

    def _record_pings(self, message: JSONDict, body: Mapping[str, Any]) -> None:
        """Who `message` notifies: every mention in its content, narrowed by ``allowed_mentions`` when given
        (https://discord.com/developers/docs/resources/message#allowed-mentions-object). Without the object all
        mentions ping and a reply pings the author it replies to; with it, only what ``parse``, ``users``,
        ``roles`` and ``replied_user`` allow. Mentions inside embeds never ping."""
        given = body.get("allowed_mentions")
        allowed: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        parse = set(allowed.get("parse") or []) if given is not None else {"users", "roles", "everyone"}
        content = str(message.get("content") or "")
        pings = [
            f"user:{user.id}"
            for user in self._parse_mentions(content)
            if "users" in parse or user.id in (allowed.get("users") or [])
        ]
        pings += [
            f"role:{role}"
            for role in re.findall(r"<@&(\d+)>", content)
            if "roles" in parse or role in (allowed.get("roles") or [])
        ]
        if "everyone" in parse and ("@everyone" in content or "@here" in content):
            pings.append("everyone")
        replied = (message.get("referenced_message") or {}).get("author", {}).get("id")
        if replied and (allowed.get("replied_user", False) if given is not None else True):
            pings.append(f"user:{replied}")
        if pings:
            self.pings[message["id"]] = list(dict.fromkeys(pings))

    # ---------------------------------------------------------------------------------- payload builders

    def _guild_by_id(self, guild_id: str | None) -> FakeGuild | None:
        return next((g for g in self.guilds if g.id == guild_id), None)

    def _channel_payload(self, guild: FakeGuild, channel: FakeChannel) -> JSONDict:
        voice = {"bitrate": 64000, "user_limit": 0, "rtc_region": None} if channel.type == CHANNEL_VOICE else {}
        return {
            **voice,
            "id": channel.id,
            "type": channel.type,
            "guild_id": guild.id,
            "name": channel.name,
            "position": channel.position,
            # https://discord.com/developers/docs/resources/channel#overwrite-object (type 1: a member)
            "permission_overwrites": (
                [{"id": self.bot_user.id, "type": 1, "allow": "0", "deny": str(channel.bot_denied)}]
                if channel.bot_denied
                else []
            ),
            "parent_id": channel.parent_id,
            "topic": channel.topic,
            "nsfw": channel.nsfw,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "default_auto_archive_duration": 1440,
            "flags": 0,
        }

    def _member_payload(self, guild: FakeGuild | None, user: FakeUser, *, with_user: bool = True) -> JSONDict:
        member: JSONDict = {
            "roles": list(guild.member_roles.get(user.id, [])) if guild is not None else [],
            "joined_at": "2024-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if guild is not None:
            # In interactions: "total permissions of the member in the channel, including overwrites"
            # (https://discord.com/developers/docs/resources/guild#guild-member-object); no overwrites here.
            member["permissions"] = str(guild.permissions_of(user))
        if with_user:
            member["user"] = user.payload()
        return member

    def _guild_payload(self, guild: FakeGuild) -> JSONDict:
        members = [self._member_payload(guild, u) for u in [self.bot_user, *guild.members]]
        for member in members:
            member.pop("permissions", None)
        everyone = {
            "id": guild.id,
            "name": "@everyone",
            "color": 0,
            "colors": {"primary_color": 0},
            "hoist": False,
            "position": 0,
            "permissions": str(guild.everyone_permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        # https://discord.com/developers/docs/topics/permissions#role-object-role-tags-structure
        bot_role = {
            **everyone,
            "id": guild.bot_role_id,
            "name": self.bot_user.username,
            "position": 1,
            "permissions": "0",
            "managed": True,
            "tags": {"bot_id": self.bot_user.id},
        }
        members[0]["roles"] = [guild.bot_role_id]
        roles = [everyone, bot_role] + [
            {**everyone, "id": role.id, "name": role.name, "position": position, "permissions": str(role.permissions)}
            for position, role in enumerate(guild.roles, start=2)
        ]
        return {
            "id": guild.id,
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": guild.owner_id,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": guild.text_channels[0].id if guild.text_channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "large": False,
            "unavailable": False,
            "member_count": len(members),
            "voice_states": [],
            "members": members,
            "channels": [self.channels[c.id] for c in guild.channels],
            "threads": [
                t
                for t in self.threads.values()
                if t.get("guild_id") == guild.id and not t["thread_metadata"]["archived"]
            ],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _resolve_place(self, channel_id: str | int | None, guild_id: str | int | None) -> tuple[str, str | None]:
        """Channel and guild for a dispatched event: the channel's own guild wins; defaults to the first guild."""
        if channel_id is None:
            guild = self._guild_by_id(str(guild_id)) if guild_id is not None else self.guild
            if guild is None or not guild.text_channels:
                raise KeyError(f"guild {guild_id} unknown or without text channels")
            return guild.text_channels[0].id, guild.id
        channel = str(channel_id)
        if channel not in self.channels:
            raise KeyError(f"unknown channel {channel}: configure it in a FakeGuild, create a thread or open_dm()")
        return channel, self._channel_guild.get(channel)

    def _parse_mentions(self, content: str) -> list[FakeUser]:
        found: list[FakeUser] = []
        for user_id in re.findall(r"<@!?(\d+)>", content):
            user = self._users.get(user_id)
            if user is not None and user not in found:
                found.append(user)
        return found

    def _make_message(
        self,
        channel_id: str,
        body: Mapping[str, Any],
        author: FakeUser,
        *,
        extra_mentions: Sequence[FakeUser] = (),
        message_type: int | None = None,
        webhook_id: str | None = None,
    ) -> JSONDict:
        content = str(body.get("content") or "")
        mentions = self._parse_mentions(content)
        mentions += [u for u in extra_mentions if u not in mentions]
        guild_id = self._channel_guild.get(channel_id)
        guild = self._guild_by_id(guild_id)
        known_roles = (guild.id, guild.bot_role_id) if guild is not None else ()
        roles = [role for role in re.findall(r"<@&(\d+)>", content) if role in known_roles]
        reference = body.get("message_reference")
        referenced = None
        if isinstance(reference, Mapping) and reference.get("message_id"):
            referenced = self.messages.get(str(reference["message_id"]))
        message: JSONDict = {
            "id": snowflake(),
            "channel_id": channel_id,
            "author": author.payload(),
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": False,
            "mentions": [u.payload() for u in mentions],
            "mention_roles": roles,
            "attachments": [],
            "embeds": [{"type": "rich", **e} for e in body.get("embeds") or []],
            "components": list(body.get("components") or []),
            "pinned": False,
            "type": message_type if message_type is not None else (19 if referenced else 0),
            "flags": int(body.get("flags") or 0),
        }
        if guild_id is not None:
            message["guild_id"] = guild_id
            if webhook_id is None:
                message["member"] = self._member_payload(guild, author, with_user=False)
                message["member"].pop("permissions", None)
        if webhook_id is not None:
            message["webhook_id"] = webhook_id
        if referenced is not None:
            message["message_reference"] = {
                "type": 0,
                "message_id": referenced["id"],
                "channel_id": referenced["channel_id"],
                "guild_id": guild_id,
            }
            message["referenced_message"] = referenced
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        return message

    def _apply_edit(self, message: JSONDict, body: Mapping[str, Any]) -> None:
        if "content" in body:
            message["content"] = str(body["content"] or "")
            message["mentions"] = [u.payload() for u in self._parse_mentions(message["content"])]
        if "embeds" in body:
            message["embeds"] = [{"type": "rich", **e} for e in body["embeds"] or []]
        if "components" in body:
            message["components"] = list(body["components"] or [])
        if "flags" in body and body["flags"] is not None:
            message["flags"] = (int(message.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL) | int(body["flags"])
        message["flags"] = int(message.get("flags") or 0) & ~MESSAGE_FLAG_LOADING
        message["edited_timestamp"] = _now_iso()

    def _store_message(self, message: JSONDict) -> None:
        self.messages[message["id"]] = message
        channel = self.channels.get(message["channel_id"])
        if channel is not None:
            channel["last_message_id"] = message["id"]
            if channel["type"] in THREAD_TYPES:
                channel["message_count"] += 1
                channel["total_message_sent"] += 1

    # ----------------------------------------------------------------------------------- dispatch plumbing

    def _synced_names(self) -> list[str]:
        return sorted({c["name"] for scope in self.commands.values() for c in scope.values()})

    @staticmethod
    def _option_type(value: Any) -> int:
        if isinstance(value, bool):
            return 5
        if isinstance(value, int):
            return 4
        if isinstance(value, float):
            return 10
        return 3

    def _command_options(
        self, command: JSONDict | None, options: Mapping[str, Any] | Sequence[JSONDict] | None
    ) -> list[JSONDict]:
        if not options:
            return []
        if not isinstance(options, Mapping):
            return [dict(o) for o in options]
        declared = {o["name"]: o for o in (command or {}).get("options", []) if isinstance(o, Mapping)}
        result = []
        for name, value in options.items():
            otype = declared.get(name, {}).get("type") or self._option_type(value)
            result.append({"name": name, "type": otype, "value": str(value) if otype in (6, 7, 8, 9) else value})
        return result

    async def _dispatch_interaction(
        self,
        itype: int,
        data: JSONDict,
        guild_id: str | None,
        channel_id: str | None,
        user: FakeUser | None,
        *,
        message: JSONDict | None = None,
    ) -> FakeInteraction:
        user = user or self.default_user
        self._users.setdefault(user.id, user)
        interaction_id, token = snowflake(), "fake-interaction-token-" + uuid.uuid4().hex
        guild = self._guild_by_id(guild_id)
        payload: JSONDict = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 10 << 20,
            "app_permissions": str(guild.everyone_permissions if guild else DEFAULT_PERMISSIONS),
        }
        if channel_id is not None:
            payload["channel_id"] = channel_id
            payload["channel"] = self.channels[channel_id]
        if guild is not None:
            payload.update(
                guild_id=guild.id,
                guild_locale="en-US",
                context=0,
                guild={"id": guild.id, "locale": "en-US", "features": []},
                member=self._member_payload(guild, user),
                authorizing_integration_owners={"0": guild.id},
            )
        else:
            payload.update(user=user.payload(), context=1, authorizing_integration_owners={"1": user.id})
        if message is not None:
            payload["message"] = message
        interaction = FakeInteraction(
            interaction_id,
            token,
            itype,
            payload,
            time.monotonic(),
            self.application_id,
            guild.id if guild else None,
            channel_id,
        )
        self.interactions[interaction_id] = interaction
        self._tokens[token] = interaction
        await self._dispatch_to(self._session_for_guild(guild.id if guild else None), "INTERACTION_CREATE", payload)
        return interaction

    def _session_for_guild(self, guild_id: str | None) -> GatewaySession:
        if not self._shard_sessions:
            raise RuntimeError("no gateway session: has the client identified yet? (see wait_for_session)")
        count = next(iter(self._shard_sessions.values())).shard_count
        shard = (int(guild_id) >> 22) % count if guild_id is not None else 0
        session = self._shard_sessions.get(shard)
        if session is None:
            raise RuntimeError(f"no gateway session for shard {shard} (guild {guild_id})")
        return session

    async def _echo(self, event: str, data: JSONDict) -> None:
        """Tell the bot about what it just did, like Discord does; skipped for ephemeral and loading messages."""
        if not self.echo_bot_messages or int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL:
            return
        guild_id = data.get("guild_id")
        if event.startswith("MESSAGE_"):
            if event == "MESSAGE_DELETE":
                data = {"id": data["id"], "channel_id": data["channel_id"], "guild_id": guild_id}
            guild_id = self._channel_guild.get(data["channel_id"])
        with contextlib.suppress(RuntimeError):
            await self._dispatch_to(self._session_for_guild(guild_id), event, data)

    def _visible_to(self, session: GatewaySession, event: str, data: JSONDict) -> JSONDict | None:
        """Apply intents: no guild messages without GUILD_MESSAGES, no content without MESSAGE_CONTENT."""
        if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"):
            return data
        in_guild = data.get("guild_id") is not None
        needed = INTENT_GUILD_MESSAGES if in_guild else INTENT_DIRECT_MESSAGES
        if not session.intents & needed:
            return None
        if event == "MESSAGE_DELETE" or session.intents & INTENT_MESSAGE_CONTENT or not in_guild:
            return data
        if data["author"]["id"] == self.bot_user.id or any(u["id"] == self.bot_user.id for u in data["mentions"]):
            return data
        return {**data, "content": "", "embeds": [], "attachments": [], "components": []}

    async def _dispatch_to(self, session: GatewaySession, event: str, data: JSONDict) -> int:
        visible = self._visible_to(session, event, data)
        if visible is None:
            return session.seq
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": visible}
        session.events.append(payload)
        if session.connection is not None:
            await session.connection.send(payload)
        return session.seq

    def _end_session(self, session: GatewaySession) -> None:
        session.invalidated = True
        self.sessions.pop(session.session_id, None)
        if self._shard_sessions.get(session.shard_id) is session:
            del self._shard_sessions[session.shard_id]

    # ------------------------------------------------------------------------------------------- gateway

    def _record_frame(self, frame: GatewayFrame) -> None:
        self.gateway_frames.append(frame)
        self._bump()

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0, heartbeat=None)
        await ws.prepare(request)
        wanted = request.query.get("compress")
        compression = wanted if self.compression and wanted in ("zlib-stream", "zstd-stream") else None
        if compression == "zstd-stream" and _zstd is None:  # pragma: no cover - zstandard missing
            compression = None
        conn = GatewayConnection(
            len(self.connections), ws, request.path, request.query, compression, self._record_frame
        )
        self.connections.append(conn)
        try:
            if request.query.get("encoding", "json") != "json":
                await conn.close(4002, "Only JSON encoding is supported by the fake")
                return ws
            await conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            self._bump()
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        payload = json.loads(msg.data)
                    except ValueError:
                        await conn.close(4002, "Error while decoding payload.")
                        break
                    await self._on_gateway_payload(conn, payload)
                elif msg.type is WSMsgType.BINARY:
                    await conn.close(4002, "The fake expects text frames from clients.")
                    break
                self._bump()
        finally:
            if conn.close_code is None:
                conn.close_code = ws.close_code
            session = conn.session
            if session is not None and session.connection is conn:
                session.connection = None
                if conn.close_code in _SESSION_ENDING_CLOSE_CODES:
                    self._end_session(session)
            conn.closed.set()
            self._bump()
        return ws

    async def _on_gateway_payload(self, conn: GatewayConnection, payload: JSONDict) -> None:
        op = payload.get("op")
        data = payload.get("d")
        self._record_frame(
            GatewayFrame(conn.id, "recv", op, payload.get("t"), payload.get("s"), data, time.monotonic())
        )
        if op == 1:
            conn.heartbeats_received += 1
            if self.ack_heartbeats:
                conn.heartbeat_acks += 1
                await conn.send({"op": 11})
        elif op == 2:
            await self._on_identify(conn, data if isinstance(data, dict) else {})
        elif op == 6:
            await self._on_resume(conn, data if isinstance(data, dict) else {})
        elif conn.session is None:
            await conn.close(4003, "Not authenticated.")
        elif op == 3:
            self.presence_updates.append(data if isinstance(data, dict) else {})
        elif op == 4:
            pass  # voice state updates: the bot has no voice features
        else:
            await conn.close(4001, "Unknown opcode.")

    @staticmethod
    def _token_matches(sent: Any, token: str) -> bool:
        return isinstance(sent, str) and sent.removeprefix("Bot ").strip() == token

    async def _on_identify(self, conn: GatewayConnection, data: JSONDict) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        if self._identify_rejections:
            code, reason = self._identify_rejections.pop(0)
            await conn.close(code, reason)
            return
        if not self._token_matches(data.get("token"), self.token):
            await conn.close(4004, "Authentication failed.")
            return
        shard = data.get("shard") or [0, 1]
        shard_id, shard_count = int(shard[0]), int(shard[1])
        if shard_count < 1 or not 0 <= shard_id < shard_count:
            await conn.close(4010, "Invalid shard.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await conn.close(4013, "Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS & ~self.enabled_privileged_intents:
            await conn.close(4014, "Disallowed intent(s).")
            return
        session = GatewaySession(uuid.uuid4().hex, shard_id, shard_count, intents)
        previous = self._shard_sessions.get(shard_id)
        if previous is not None:
            self._end_session(previous)
        self.sessions[session.session_id] = session
        self._shard_sessions[shard_id] = session
        conn.session = session
        session.connection = conn
        shard_guilds = [g for g in self.guilds if (int(g.id) >> 22) % shard_count == shard_id]
        ready = {
            "v": 10,
            "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": g.id, "unavailable": True} for g in shard_guilds],
            "session_id": session.session_id,
            "resume_gateway_url": self.resume_gateway_url,
            "shard": [shard_id, shard_count],
            "application": {"id": self.application_id, "flags": self._application_payload()["flags"]},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth_session_id_hash": "",
            "_trace": ["fake-discord"],
        }
        await self._dispatch_to(session, "READY", ready)
        for guild in shard_guilds:
            await self._dispatch_to(session, "GUILD_CREATE", self._guild_payload(guild))

    async def _on_resume(self, conn: GatewayConnection, data: JSONDict) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        if not self._token_matches(data.get("token"), self.token):
            await conn.close(4004, "Authentication failed.")
            return
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.invalidated:
            await conn.send({"op": 9, "d": False})
            return
        old = session.connection
        if old is not None and old is not conn:
            session.connection = None
            await old.close(4000, "Session resumed elsewhere.")
        last_seen = int(data.get("seq") or 0)
        conn.session = session
        # Replay everything the client missed; events dispatched while replaying land in the same list.
        index = 0
        while index < len(session.events):
            event = session.events[index]
            index += 1
            if event["s"] > last_seen and not await conn.send(event):
                return
        session.connection = conn
        session.resumes += 1
        conn.resumed = True
        await self._dispatch_to(session, "RESUMED", {"_trace": ["fake-discord"]})


# -------------------------------------------------------------------------------------- discord.py glue


@contextlib.contextmanager
def point_discord_at(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST base and default gateway at ``fake``; restores both globals on exit.

    Why globals: discord.py has no per-client base URL. ``Route.BASE`` is read when each Route is built (REST
    and interaction webhooks alike) and ``DiscordWebSocket.DEFAULT_GATEWAY`` (a ``yarl.URL``) is where a
    non-sharded client connects; AutoSharded clients use the URL from GET /gateway/bot instead.
    """
    import discord.gateway
    import discord.http
    import yarl

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@contextlib.asynccontextmanager
async def run_client(client: discord.Client, token: str, *, timeout: float = 10.0) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``client.start(token, reconnect=False)`` until it is ready; close it and await it on exit.

    Why a helper: ``client.wait_until_ready()`` cannot be awaited before login has set up the client, and a
    client that dies during startup (bad token, 4014) must fail the test at once rather than time out.
    Yields the client's task; raises whatever the client raised if it stops before becoming ready.
    """
    task: asyncio.Task[None] = asyncio.create_task(client.start(token, reconnect=False))
    deadline = time.monotonic() + timeout
    try:
        while not client.is_ready():
            if task.done():
                task.result()  # re-raises the client's failure
                raise RuntimeError("the client stopped before becoming ready")
            if time.monotonic() > deadline:
                raise FakeDiscordTimeout(f"the client was not ready within {timeout}s")
            await asyncio.sleep(0.02)
        yield task
    finally:
        if not client.is_closed():
            await client.close()
        if not task.done():
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"
