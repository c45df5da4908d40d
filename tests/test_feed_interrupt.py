"""Crash safety for feeds: `citebot ingest FEED` killed (kill -9) in the middle of writing loses nothing, and the
fetch state it leaves behind never claims a page that is not whole in the index, so the re-run fetches exactly the
pages that are missing and then nothing more.

Same crash driver as tests/test_ingest_interrupt.py: the ingest runs in a subprocess with small embedding batches and
kills itself in the middle of a chunk write, after half of that batch's chunks are stored.
"""

from __future__ import annotations

import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.embeddings import HashingEmbedder
from ingest.fetch import Fetcher, FetchOptions
from ingest.pipeline import IngestPipeline
from tests.conftest import VENV_BIN, cli_env
from tests.test_ingest_interrupt import (
    CRASH_DRIVER,
    CRASH_ON_BATCH,
    SMALL_BATCH_CHUNKS,
    open_store,
    settings_for,
)
from tests.web_site import RSS, Site, article_page, rss_feed

ENTRIES = 60
WORDS = "harbour tide ledger orchard granite signal copper lantern meadow quarry ferry beacon canal willow".split()


def story(index: int) -> list[str]:
    rng = random.Random(index)
    return [
        f"Story {index} begins: " + " ".join(rng.choice(WORDS) for _ in range(30)) + ".",
        f"Story {index} goes on: " + " ".join(rng.choice(WORDS) for _ in range(30)) + ".",
    ]


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        items = []
        for index in range(ENTRIES):
            path = f"/news/story-{index:03d}.html"
            published = f"2025-06-{1 + index % 28:02d}T08:00:00Z"
            running.put(path, article_page(f"Story {index}", story(index), published=published))
            items.append((f"Story {index}", path, published))
        running.put("/feed.xml", rss_feed(running, items), RSS)
        yield running


def test_kill_9_mid_feed_loses_nothing_and_the_rerun_fetches_only_what_is_missing(site: Site, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    feed = site.url("/feed.xml")
    crashed = subprocess.run(
        [str(VENV_BIN / "python"), "-c", CRASH_DRIVER, str(SMALL_BATCH_CHUNKS), str(CRASH_ON_BATCH), "kill", feed],
        cwd=tmp_path,
        env=cli_env(settings, CITEBOT_ALLOW_PRIVATE_URLS="true"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    with open_store(settings) as store:
        everything = store.documents(include_pending=True)
        ready = {doc_id: record for doc_id, record in everything.items() if record.ready}
        pending = {doc_id: record for doc_id, record in everything.items() if not record.ready}
        assert ready and pending, "the kill landed after some pages were written and before all were"
        for doc_id, record in ready.items():
            assert len(store.chunks_of([doc_id])) == record.chunks, "a ready page is whole"
            assert record.web[record.source].feed == feed and record.web[record.source].version
        assert any(len(store.chunks_of([doc_id])) < record.chunks for doc_id, record in pending.items())
        assert store.feed_states() == {}, "the feed is not marked done until every page is in"
        done = {record.source for record in ready.values()}

    requests = len(site.fetched())
    with open_store(settings) as store:
        pipeline = IngestPipeline(store, HashingEmbedder(), fetcher=Fetcher(FetchOptions(allow_private=True)))
        report = pipeline.run([feed])
        assert (report.added, report.unchanged, report.failed) == (ENTRIES - len(done), len(done), [])
        fetched = {site.url(r.path) for r in site.fetched()[requests:] if r.path != "/feed.xml"}
        assert fetched == {site.url(f"/news/story-{i:03d}.html") for i in range(ENTRIES)} - done
        final = store.documents(include_pending=True)
        assert len(final) == ENTRIES and all(record.ready for record in final.values())
        assert all(len(store.chunks_of([doc_id])) == record.chunks for doc_id, record in final.items())
        assert store.count_chunks() == sum(record.chunks for record in final.values()), "no half-written leftovers"
        assert set(store.feed_states()) == {feed}

        requests = len(site.fetched())
        again = pipeline.run([feed])
        assert (again.added, again.unchanged) == (0, ENTRIES)
        assert [(r.path, r.status) for r in site.fetched()[requests:]] == [("/feed.xml", 304)]
