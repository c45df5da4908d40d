"""Progress output: a rich bar on a terminal, plain lines in logs, nothing with --json."""

from __future__ import annotations

import io
import sys

import pytest

from bot.progress import progress_reporter


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_reporter() as update:
        for done in range(1, 4):
            update("embed", done, 3)
    output = terminal.getvalue()
    assert "Embedding documents" in output
    assert "\x1b[" in output or "━" in output  # drawn by rich, not printed as log lines
    assert "Embedding documents: 1/3" not in output


def test_logs_get_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with progress_reporter() as update:
        for done in range(1, 4):
            update("scan", done, 3)
    lines = log.getvalue().splitlines()
    assert lines[0] == "Reading files: 1/3" and lines[-1] == "Reading files: 3/3"


def test_json_mode_prints_no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    log = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", log)
    with progress_reporter(enabled=False) as update:
        update("scan", 1, 1)
    assert log.getvalue() == ""
