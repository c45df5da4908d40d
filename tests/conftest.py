"""Shared fixtures: settings in a temporary data dir, the hashing embedder, and a real Chroma server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.embeddings import HashingEmbedder
from bot.engine import Engine
from bot.question_log import QuestionLog
from bot.store import ChunkStore
from ingest.pipeline import IngestPipeline
from tests import browser
from tests.chroma import start_chroma, wait_until_listening

ROOT = Path(__file__).resolve().parent.parent
SEED_CORPUS = ROOT / "corpus"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _release_embedded_chroma(tmp_path: Path) -> Iterator[None]:
    """Stop the embedded Chroma systems a test opened under its own folder once it ends: chromadb caches them
    per path for the life of the process, and each holds ~20 files (the suite would run out of descriptors)."""
    yield
    from chromadb.api.shared_system_client import SharedSystemClient

    cache = SharedSystemClient._identifier_to_system
    for identifier in [key for key in cache if key.startswith(str(tmp_path))]:
        cache.pop(identifier).stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedding_model="hashing", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def store(settings: Settings, embedder: HashingEmbedder) -> ChunkStore:
    return ChunkStore(settings, embedder)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the seed corpus that a test may change."""
    target = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, target)
    return target


@pytest.fixture
def engine(settings: Settings, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """An engine over the seed corpus (hashing embedder), run from the corpus's folder: sources are relative to
    the working directory, as in production."""
    monkeypatch.chdir(corpus.parent)
    built = Engine(settings)
    IngestPipeline(built.store, built.embedder).run([Path("corpus")])
    return built


@pytest.fixture
def log(settings: Settings) -> Iterator[QuestionLog]:
    """The question log of `settings`, closed at the end."""
    opened = QuestionLog.for_settings(settings)
    yield opened
    opened.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a `citebot` subprocess that uses the given settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CITEBOT_")}
    env.pop("DISCORD_TOKEN", None)
    env.update(
        CITEBOT_DATA_DIR=str(settings.data_dir),
        CITEBOT_EMBEDDING_MODEL=settings.embedding_model,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def citebot(*args: str, env: dict[str, str], cwd: Path, stdin: str | None = None, timeout: float = 120):
    return subprocess.run(
        [str(VENV_BIN / "citebot"), *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real `chroma run` server on 127.0.0.1, started for this test session and stopped after it."""
    path = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = open(path / "server.log", "wb")  # noqa: SIM115 (kept open for the server's whole life)
    process = start_chroma(path / "db", port, output=log)
    wait_until_listening(process, port, path / "server.log")
    yield "127.0.0.1", port
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the folder of the console's screenshots (taken by tests/test_web_browser.py) at the end of the run."""
    shots = browser.screenshots_taken()
    if shots is not None:
        terminalreporter.write_line(f"console screenshots: {shots}")
