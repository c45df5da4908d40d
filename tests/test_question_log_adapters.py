"""Every way of asking lands in the question log (`citebot ask`, the REPL, Discord; the console is in test_web.py),
and with CITEBOT_PUBLIC_URL every citation links to its passage in the console: in the answer JSON, the terminal
output and the Discord embed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bot.config import Settings
from bot.discord_app.render import citation_location
from bot.discord_app.render import render_answer as discord_answer
from bot.engine import Engine
from bot.links import link_citations, passage_path
from bot.question_log import QuestionFilter, QuestionLog
from bot.render import render_answer
from bot.types import Answer, Citation
from ingest.pipeline import IngestPipeline
from tests.conftest import citebot, cli_env
from tests.fake_discord import FakeDiscord

PUBLIC = "https://console.example.org/"
SEOUL = "why Seoul and not Beijing?"


def test_the_engine_links_every_citation_when_a_public_url_is_set(settings: Settings, corpus: Path) -> None:
    engine = Engine(settings.model_copy(update={"public_url": PUBLIC.rstrip("/")}))
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    answer = engine.ask(SEOUL)
    assert answer.citations
    for citation in answer.citations:
        assert (
            citation.link
            == f"https://console.example.org/doc/{citation.doc_id}?start={citation.start}&end={citation.end}#q"
        )
    assert all(
        c.link is None for c in Engine(settings, store=engine.store, embedder=engine.embedder).ask(SEOUL).citations
    )


def test_public_url_must_be_http() -> None:
    assert Settings(_env_file=None, CITEBOT_PUBLIC_URL="https://x.example.org/").public_url == "https://x.example.org"  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="not an http"):
        Settings(_env_file=None, CITEBOT_PUBLIC_URL="javascript:alert(1)")  # type: ignore[call-arg]


def test_links_render_in_the_terminal_and_in_discord() -> None:
    quote = "Seoul works as neutral staging ground."
    answer = link_citations(
        Answer(
            "q",
            "because [1]",
            (Citation(1, "corpus/a.txt", "A", 5, 5 + len(quote), quote, 1.0, doc_id="ab" * 16),),
            "answered",
        ),
        "https://console.example.org",
    )
    link = f"https://console.example.org{passage_path('ab' * 16, 5, 5 + len(quote))}"
    assert answer.citations[0].link == link
    out = Console(record=True, width=200)
    render_answer(answer, out)
    assert link in out.export_text()
    assert citation_location(answer.citations[0]).endswith(f"[read in context]({link})")
    assert link in discord_answer(answer).fields[0].value
    unlinked = Answer("q", "x", (Citation(1, "a.txt", "A", 0, 1, "x", 1.0),), "answered")
    assert link_citations(unlinked, "https://console.example.org").citations[0].link is None, "no doc, no link"


def test_citebot_ask_logs_each_question_and_prints_links(settings: Settings, corpus: Path, tmp_path: Path) -> None:
    env = cli_env(settings, CITEBOT_PUBLIC_URL=PUBLIC)
    assert citebot("ingest", "corpus", env=env, cwd=tmp_path).returncode == 0
    result = citebot("ask", "--json", env=env, cwd=tmp_path, stdin=f"{SEOUL}\nWho leads the U.S. side?\n")
    assert result.returncode == 0, result.stderr
    first = json.loads(result.stdout.splitlines()[0])
    assert first["citations"][0]["link"].startswith("https://console.example.org/doc/")
    human = citebot("ask", SEOUL, env=env, cwd=tmp_path)
    assert "https://console.example.org/doc/" in human.stdout

    log = QuestionLog.for_settings(settings)  # the processes have ended: their rows were written at exit
    logged = log.questions(QuestionFilter(channel_kind="cli"))
    assert [s.question for s in logged] == [SEOUL, "Who leads the U.S. side?", SEOUL]
    assert all(s.latency_ms and s.latency_ms > 0 for s in logged)
    assert logged[-1].citations == first["citations"]

    off = citebot("ask", "another question", env={**env, "CITEBOT_QUESTION_LOG": "false"}, cwd=tmp_path)
    assert off.returncode == 0 and log.count() == 3


def test_the_repl_logs_its_questions(settings: Settings, corpus: Path, tmp_path: Path) -> None:
    env = cli_env(settings)
    assert citebot("ingest", "corpus", env=env, cwd=tmp_path).returncode == 0
    code = "import sys; from bot.cli import main; sys.exit(main(['repl']))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=f"{SEOUL}\n:k 3\nand who leads the U.S. side?\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    logged = QuestionLog.for_settings(settings).questions(QuestionFilter(channel_kind="repl"))
    assert [s.question for s in logged] == ["and who leads the U.S. side?", SEOUL]


async def test_discord_answers_are_logged_with_where_and_who(settings: Settings, corpus: Path) -> None:
    from tests.test_discord_e2e import TOKEN, button_ids, running_bot

    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    async with FakeDiscord(token=TOKEN) as fake, running_bot(settings, engine, fake) as run:
        interaction, followup = await run.ask(SEOUL)
        answer_id = button_ids(followup.json)[0].rsplit(":", 1)[1]
        message = await fake.dispatch_message(f"{fake.bot_user.mention} who leads the U.S. side?")
        await fake.wait_for_channel_message(message["id"], 10)
        stored = run.feedback.get(answer_id)
        assert stored is not None and stored.channel_kind == "discord"
        assert (stored.guild_id, stored.channel_id) == (str(fake.guild.id), str(interaction.channel_id))
        in_thread = run.feedback.questions(QuestionFilter(text="U.S. side"))
        assert len(in_thread) == 1 and in_thread[0].channel_id == message["id"], (
            "logged where it was answered: the thread"
        )
        store = run.feedback
    import sqlite3

    with sqlite3.connect(store.path) as db:
        users = {row[0] for row in db.execute("SELECT user_hash FROM answers")}
    assert users == {store.user_hash(fake.default_user.id)}


async def test_with_the_log_off_discord_answers_carry_no_vote_buttons(settings: Settings, corpus: Path) -> None:
    from tests.test_discord_e2e import TOKEN, button_ids, running_bot

    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    off = settings.model_copy(update={"question_log": False})
    async with FakeDiscord(token=TOKEN) as fake, running_bot(off, engine, fake) as run:
        _interaction, followup = await run.ask(SEOUL)
        assert "neutral staging ground" in json.dumps(followup.json)
        assert button_ids(followup.json) == []
        assert run.feedback.count() == 0
