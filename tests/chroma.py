"""A real `chroma run` server on 127.0.0.1, for the tests and the benchmarks that need one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

VENV_BIN = Path(sys.executable).parent


def start_chroma(path: Path, port: int, output: IO[bytes] | int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start `chroma run` on `path` (its output to `output`); it listens a few seconds later."""
    return subprocess.Popen(
        [str(VENV_BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=output,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )


def wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path | None = None) -> None:
    """Wait up to 60 s for the server to accept connections; if it exits or never does, stop it and say why."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(log.read_text() if log else "the Chroma server exited") from None
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the Chroma server did not start within 60 s")
