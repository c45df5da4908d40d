"""One typed settings object: every option of citebot, described, read from the environment and `.env`.

Names are part of the contract (`CITEBOT_*`, plus `DISCORD_TOKEN`); `.env.example` and the README list them all.
Secrets are `SecretStr`, so they never show up in a repr, a log line or an error message.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

DEFAULT_EMBEDDING_MODEL = "bundled:all-MiniLM-L6-v2"
DEFAULT_FETCH_TIMEOUT = 20.0
DEFAULT_FETCH_MAX_BYTES = 5_000_000
DEFAULT_FETCH_CONCURRENCY = 4
DEFAULT_USER_AGENT = "citebot/0.1 (document indexer; honours robots.txt)"


class LLMProvider(StrEnum):
    NONE = "none"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OLLAMA = "ollama"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """Every citebot option. Field descriptions are shown by `citebot config`."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(
        Path(".citebot"),
        validation_alias=_env("CITEBOT_DATA_DIR"),
        description="Local state: the embedded Chroma, the REPL history and the feedback database.",
    )
    chroma_host: str | None = Field(
        None,
        validation_alias=_env("CITEBOT_CHROMA_HOST"),
        description="When set, use the Chroma server at this host instead of the embedded one.",
    )
    chroma_port: int = Field(
        8000, validation_alias=_env("CITEBOT_CHROMA_PORT"), description="Port of the Chroma server."
    )
    chroma_token: SecretStr | None = Field(
        None, validation_alias=_env("CITEBOT_CHROMA_TOKEN"), description="Auth token for the Chroma server."
    )
    collection: str = Field(
        "corpus",
        validation_alias=_env("CITEBOT_COLLECTION"),
        description="The Chroma collection that holds the corpus.",
    )
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        validation_alias=_env("CITEBOT_EMBEDDING_MODEL"),
        description=(
            "A sentence-transformers model name or path; the default is the bundled all-MiniLM-L6-v2. Ingestion runs "
            "it on torch, questions on ONNX Runtime (exported once into <data_dir>/models)."
        ),
    )
    embedding_device: str = Field(
        "cpu",
        validation_alias=_env("CITEBOT_EMBEDDING_DEVICE"),
        description="Torch device for ingestion's batches (questions always run on the CPU).",
    )
    llm: LLMProvider = Field(
        LLMProvider.NONE,
        validation_alias=_env("CITEBOT_LLM"),
        description="Answerer: none (extractive, no key), openai, anthropic or ollama.",
    )
    llm_model: str | None = Field(
        None, validation_alias=_env("CITEBOT_LLM_MODEL"), description="Chat model name for the LLM answerer."
    )
    llm_base_url: str | None = Field(
        None,
        validation_alias=_env("CITEBOT_LLM_BASE_URL"),
        description="Base URL of an OpenAI-compatible server (vLLM, llama.cpp, LM Studio, Ollama).",
    )
    llm_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "CITEBOT_LLM_API_KEY", "citebot_llm_api_key", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"
        ),
        description="API key for the LLM provider (falls back to OPENAI_API_KEY / ANTHROPIC_API_KEY).",
    )
    llm_timeout: float = Field(
        30.0, validation_alias=_env("CITEBOT_LLM_TIMEOUT"), description="Seconds before the LLM gives up."
    )
    top_k: int = Field(
        5, ge=1, le=50, validation_alias=_env("CITEBOT_TOP_K"), description="Passages retrieved per question."
    )
    discord_token: SecretStr | None = Field(
        None, validation_alias=_env("DISCORD_TOKEN"), description="The Discord bot token; never logged."
    )
    discord_api_base: str | None = Field(
        None,
        validation_alias=_env("CITEBOT_DISCORD_API_BASE"),
        description="Route Discord REST calls through this base URL (a proxy, or the tests' fake Discord).",
    )
    discord_gateway_url: str | None = Field(
        None,
        validation_alias=_env("CITEBOT_DISCORD_GATEWAY_URL"),
        description="Connect to this gateway websocket URL instead of Discord's.",
    )
    discord_guild_id: int | None = Field(
        None,
        validation_alias=_env("CITEBOT_DISCORD_GUILD_ID"),
        description="Sync slash commands to this guild at once instead of globally.",
    )
    discord_channels: str | None = Field(
        None,
        validation_alias=_env("CITEBOT_DISCORD_CHANNELS"),
        description="Comma-separated channel ids the bot answers in (default: all).",
    )
    discord_shard_count: int | None = Field(
        None,
        validation_alias=_env("CITEBOT_DISCORD_SHARD_COUNT"),
        description="Total shards across all processes (default: Discord's recommendation).",
    )
    discord_shard_ids: str | None = Field(
        None,
        validation_alias=_env("CITEBOT_DISCORD_SHARD_IDS"),
        description="Comma-separated shard ids this process runs (needs the shard count).",
    )

    discord_dms: bool = Field(
        False,
        validation_alias=_env("CITEBOT_DISCORD_DMS"),
        description="Answer /ask and messages in direct messages (off: a DM gets a short note instead).",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        validation_alias=_env("CITEBOT_LOG_FORMAT"),
        description="Log lines of `citebot discord` as text or as one JSON object per line.",
    )
    log_questions: bool = Field(
        False,
        validation_alias=_env("CITEBOT_LOG_QUESTIONS"),
        description="Include the question text in the log line of each answered question (off: ids and figures only).",
    )
    question_log: bool = Field(
        True,
        validation_alias=_env("CITEBOT_QUESTION_LOG"),
        description="Record every question answered (Discord, REPL, `citebot ask`, console) for the console.",
    )
    log_retention_days: int = Field(
        90,
        ge=0,
        validation_alias=_env("CITEBOT_LOG_RETENTION_DAYS"),
        description="Days the question log keeps questions and votes (0 keeps them forever).",
    )
    web_token: SecretStr | None = Field(
        None,
        validation_alias=_env("CITEBOT_WEB_TOKEN"),
        description="The operator console's login token; required to bind the console beyond loopback.",
    )
    web_host: str = Field(
        "127.0.0.1",
        validation_alias=_env("CITEBOT_WEB_HOST"),
        description="The address the operator console binds (another than loopback needs CITEBOT_WEB_TOKEN).",
    )
    web_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        validation_alias=_env("CITEBOT_WEB_PORT"),
        description="Serve the console on this port from `citebot discord` too (`citebot web` defaults to 8080).",
    )
    public_url: str | None = Field(
        None,
        validation_alias=_env("CITEBOT_PUBLIC_URL"),
        description="The console's base URL as users reach it; citations then link to their passage there.",
    )

    discord_ingest_roles: str | None = Field(
        None,
        validation_alias=_env("CITEBOT_DISCORD_INGEST_ROLES"),
        description="Comma-separated role names allowed to use /ingest (members with Manage Server always are).",
    )
    allow_private_urls: bool = Field(
        False,
        validation_alias=_env("CITEBOT_ALLOW_PRIVATE_URLS"),
        description="Allow fetching from loopback, private and link-local addresses (off: they are refused).",
    )
    fetch_timeout: float = Field(
        DEFAULT_FETCH_TIMEOUT,
        gt=0,
        validation_alias=_env("CITEBOT_FETCH_TIMEOUT"),
        description="Seconds a web request may take (connect, each read, and the whole download).",
    )
    fetch_max_bytes: int = Field(
        DEFAULT_FETCH_MAX_BYTES,
        gt=0,
        validation_alias=_env("CITEBOT_FETCH_MAX_BYTES"),
        description="Largest page, feed or sitemap downloaded, in bytes; bigger ones are refused.",
    )
    fetch_concurrency: int = Field(
        DEFAULT_FETCH_CONCURRENCY,
        ge=1,
        le=32,
        validation_alias=_env("CITEBOT_FETCH_CONCURRENCY"),
        description="Pages fetched at once when a feed or sitemap lists many.",
    )
    user_agent: str = Field(
        DEFAULT_USER_AGENT,
        validation_alias=_env("CITEBOT_USER_AGENT"),
        description="The User-Agent sent with every web request, and the name robots.txt rules are read for.",
    )
    sources_file: Path = Field(
        Path("sources.toml"),
        validation_alias=_env("CITEBOT_SOURCES"),
        description="The source list `citebot watch` keeps ingested (folders, URLs, feeds, with schedules).",
    )
    watch: bool = Field(
        False,
        validation_alias=_env("CITEBOT_WATCH"),
        description="Run the source watcher inside `citebot discord` / `citebot run` (same as --watch).",
    )

    @field_validator(
        "chroma_host",
        "llm_model",
        "llm_base_url",
        "discord_channels",
        "discord_shard_ids",
        "public_url",
        "discord_ingest_roles",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("web_port", mode="before")
    @classmethod
    def _blank_port_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError(f"{value!r} is not an http(s) URL such as https://citebot.example.org")
        return value.rstrip("/")

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables that give them: a child process (`citebot train`, started
        from the console) then works on the same index and data, whatever the parent was configured by."""
        variables = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None or not isinstance(field.validation_alias, AliasChoices):
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            variables[str(field.validation_alias.choices[0])] = str(value)
        return variables

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def allowed_channel_ids(self) -> frozenset[int]:
        return frozenset(_int_list(self.discord_channels, "CITEBOT_DISCORD_CHANNELS"))

    @property
    def uploads_dir(self) -> Path:
        """Where files attached to Discord's /ingest are kept: their path is the source citations name."""
        return self.data_dir / "uploads"

    @property
    def ingest_role_names(self) -> frozenset[str]:
        raw = self.discord_ingest_roles or ""
        return frozenset(name.strip() for name in raw.split(",") if name.strip())

    @property
    def shard_ids(self) -> list[int] | None:
        return _int_list(self.discord_shard_ids, "CITEBOT_DISCORD_SHARD_IDS") or None


def _int_list(raw: str | None, name: str) -> list[int]:
    if not raw:
        return []
    try:
        return [int(part) for part in raw.replace(" ", "").split(",") if part]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {raw!r}") from None


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's multi-line report into one line per the error contract."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {field}: {first['msg']}; fix it in the environment or .env") from None
