"""Progress output: a rich bar on a terminal, debug log lines in pipes (shown with -v), nothing with --json."""

from __future__ import annotations

import io
import logging
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


def test_pipes_get_no_progress_lines_unless_verbose(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    with progress_reporter() as update:
        for done in range(1, 4):
            update("scan", done, 3)
    assert piped.getvalue() == ""
    caplog.set_level(logging.DEBUG, logger="citebot.progress")
    with progress_reporter() as update:
        update("scan", 1, 3)
    assert [record.getMessage() for record in caplog.records] == ["Reading files: 1/3"]


def test_json_mode_prints_no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    log = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", log)
    with progress_reporter(enabled=False) as update:
        update("scan", 1, 1)
    assert log.getvalue() == ""
