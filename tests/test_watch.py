"""`citebot watch` and the source list: folders re-ingested on change, feeds on their schedule, failures retried
with backoff without holding up the others, and a running engine that answers from what just came in."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.embeddings import HashingEmbedder
from bot.engine import Engine
from bot.errors import SourcesError
from bot.store import ChunkStore
from ingest.fetch import Fetcher, FetchOptions
from ingest.pipeline import IngestPipeline
from ingest.sources import Source, load_sources, parse_interval
from ingest.watch import Watcher
from tests.conftest import VENV_BIN, citebot, cli_env
from tests.web_site import RSS, Site, article_page, rss_feed

WAIT = 20.0

FIRST = ("Tide tables printed for the summer", "/news/tides.html", "2025-06-01T08:00:00Z")
LATER = ("Lantern festival moves to the quay", "/news/lanterns.html", "2025-06-02T08:00:00Z")


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- the source list -----------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_source_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[source]]
folder = "docs"

[[source]]
feed = "https://example.com/rss.xml"
every = "15m"
prune = true

[[source]]
url = "https://example.com/about"

[[source]]
sitemap = "https://example.com/sitemap.xml"
every = "1h30m"
""",
    )
    folder, feed, url, site_map = load_sources(path)
    assert (folder.kind, folder.every) == ("folder", None)
    assert Path(folder.target).resolve() == tmp_path / "docs", "relative to the source list's folder"
    assert (feed.kind, feed.target, feed.every, feed.prune) == ("feed", "https://example.com/rss.xml", 900.0, True)
    assert (url.every, url.prune) == (86400.0, False)
    assert site_map.every == 5400.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[source]]\nfolder = "a"\nevry = "1m"\n', "unknown key 'evry'"),
        ('[[source]]\nfolder = "a"\nfeed = "https://x/y"\n', "exactly one of"),
        ('[[source]]\nfeed = "https://x/y"\nevery = "soon"\n', "is not a schedule"),
        ('[[source]]\nfeed = "ftp://x/y"\n', "only http:// and https://"),
        ('[[source]]\nfeed = "https://x/y"\nprune = "yes"\n', "prune must be true or false"),
        ("[[sources]]\nfolder = 'a'\n", "unknown table 'sources'"),
        ("", "lists no sources"),
        ("[[source]\n", "not valid TOML"),
    ],
)
def test_mistakes_in_the_source_list_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SourcesError, match=message) as caught:
        load_sources(write(tmp_path, text))
    assert "\n" not in str(caught.value)


def test_a_missing_source_list(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match="no source list"):
        load_sources(tmp_path / "sources.toml")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("6h", 21600), ("1d", 86400), ("1h30m", 5400)]
)
def test_schedules(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "15", "m15", "0s", "1x"])
def test_bad_schedules(text: str) -> None:
    with pytest.raises(ValueError):
        parse_interval(text)


# -- the watcher ---------------------------------------------------------------------------------------------


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        title, path, published = FIRST
        running.put(
            path, article_page(title, ["The summer tide tables are printed and in the library."], published=published)
        )
        running.put("/feed.xml", rss_feed(running, [FIRST]), RSS)
        yield running


class Running:
    def __init__(self, watcher: Watcher, lines: list[str]) -> None:
        self.watcher = watcher
        self.lines = lines
        self.thread = threading.Thread(target=watcher.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.watcher.stop()
        self.thread.join(timeout=WAIT)
        assert not self.thread.is_alive(), "the watcher stops when asked"


def watch(store: ChunkStore, sources: list[Source]) -> Running:
    lines: list[str] = []
    pipeline = IngestPipeline(store, HashingEmbedder(), fetcher=Fetcher(FetchOptions(allow_private=True, timeout=2)))
    watcher = Watcher(pipeline, sources, say=lines.append, backoff=0.2, debounce_ms=100)
    return Running(watcher, lines)


def titles(store: ChunkStore) -> set[str]:
    return {record.title for record in store.documents().values()}


def test_the_watcher_keeps_folders_and_feeds_ingested(site: Site, settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "harbour.md").write_text("# Harbour dues rise\n\nHarbour dues rise by five per cent in July.\n")
    store = ChunkStore(settings, HashingEmbedder())
    engine = Engine(settings, embedder=HashingEmbedder(), store=store)
    sources = [Source("folder", str(folder), None), Source("feed", site.url("/feed.xml"), 0.5)]
    with watch(store, sources) as running:
        wait_for(lambda: titles(store) == {"Harbour dues rise", FIRST[0]}, "the first cycle")
        assert running.lines[0].startswith("watch: keeping 2 source(s)")
        wait_for(
            lambda: any(line.startswith("watch: cycle 1 (2 sources): 2 added") for line in running.lines), "a line"
        )

        (folder / "ferry.md").write_text("# Ferry timetable\n\nThe ferry now leaves every twenty minutes.\n")
        wait_for(lambda: "Ferry timetable" in titles(store), "a new file in a watched folder")

        title, path, published = LATER
        site.put(path, article_page(title, ["The lantern festival will be held on the quay."], published=published))
        site.put("/feed.xml", rss_feed(site, [FIRST, LATER]), RSS)
        wait_for(lambda: title in titles(store), "a new feed entry, on the feed's schedule")
        # The engine that serves questions sees it without a restart, with its date.
        answer = engine.ask("Where will the lantern festival be held?")
        assert any(c.published == "2025-06-02T08:00:00+00:00" and "quay" in c.quote for c in answer.citations), answer

        (folder / "harbour.md").unlink()
        wait_for(lambda: "Harbour dues rise" not in titles(store), "a deleted file leaves the index")


def test_a_failing_source_is_retried_with_backoff_and_does_not_stop_the_others(site, settings, tmp_path):
    store = ChunkStore(settings, HashingEmbedder())
    missing_folder = tmp_path / "not-yet"
    sources = [
        Source("feed", site.url("/gone.xml"), 60.0),
        Source("folder", str(missing_folder), None),
        Source("feed", site.url("/feed.xml"), 60.0),
    ]
    with watch(store, sources) as running:
        wait_for(lambda: FIRST[0] in titles(store), "the working feed")
        wait_for(lambda: sum("gone.xml: not found (HTTP 404)" in line for line in running.lines) >= 3, "retries")
        delays = [float(line.rsplit("retrying in ", 1)[1].split()[0]) for line in running.lines if "gone.xml" in line]
        assert delays[:3] == sorted(delays[:3]) and delays[2] > delays[0], "each retry waits longer"
        assert any("no such folder" in line for line in running.lines)
        missing_folder.mkdir()
        (missing_folder / "late.md").write_text("# Late arrival\n\nThis folder appeared after the watcher started.\n")
        wait_for(lambda: "Late arrival" in titles(store), "the folder, once it exists")
        (missing_folder / "later.md").write_text("# Later still\n\nAnd now its changes are watched too.\n")
        wait_for(lambda: "Later still" in titles(store), "changes in the folder that appeared")


# -- the command -------------------------------------------------------------------------------------------


def test_citebot_watch_runs_until_interrupted(site: Site, settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "note.md").write_text("# A note\n\nSomething worth indexing.\n")
    write(tmp_path, f'[[source]]\nfolder = "docs"\n\n[[source]]\nfeed = "{site.url("/feed.xml")}"\nevery = "1h"\n')
    process = subprocess.Popen(
        [str(VENV_BIN / "citebot"), "watch"],
        cwd=tmp_path,
        env=cli_env(settings, CITEBOT_ALLOW_PRIVATE_URLS="true"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    try:
        for line in process.stderr:
            seen.append(line.rstrip("\n"))
            if line.startswith("watch: cycle 1"):
                break
        assert seen and seen[-1].startswith("watch: cycle 1 (2 sources): 2 added"), seen
        process.send_signal(signal.SIGINT)
        _out, rest = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert rest.strip().splitlines()[-1].startswith("citebot: watch stopped") and "Traceback" not in rest


def test_citebot_watch_without_a_source_list(settings: Settings, tmp_path: Path) -> None:
    result = citebot("watch", env=cli_env(settings), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "citebot: no source list at sources.toml; create it (see README, section Sources) or set CITEBOT_SOURCES"
    )
