"""Feed ingestion and its re-run: 500 BBC News articles served as web pages on 127.0.0.1 through one RSS feed.

The pages are built in memory from the BBC News corpus (`bbc-news/` under CITEBOT_BENCH_DATA, default a shared/data
folder beside the checkout; read-only, nothing is copied into the repository) with the navigation, ads and comments
of a real news page around each article, and served by the local test site (tests/web_site.py: ETags,
Last-Modified, 304 Not Modified). Then, with the real model on a fresh embedded index:
 1. `IngestPipeline.run([feed])`: every entry's page is fetched, extracted, split, embedded and written;
 2. the same run again with a new store, embedder and fetcher, as a second `citebot ingest FEED` would: it should
    fetch nothing unchanged (the feed answers 304) and take <= 5 % of run 1;
 3. the same re-run as a real `citebot ingest FEED --json` process, interpreter start and imports included.

    python -m bench feed
    python -m bench.feed_bbc [--data DIR] [--articles 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    BBC_NEWS,
    PROJECT_ROOT,
    Timer,
    bbc_files_by_category,
    load_average,
    print_machine,
)
from bot.config import load_settings
from bot.embeddings import create_embedder
from bot.store import ChunkStore
from ingest.pipeline import IngestPipeline, IngestReport

# The local news site of the tests: the benchmark measures the client against the same server the tests trust.
from tests.web_site import RSS, Site, article_page, rss_feed

RERUN_GOAL = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.feed_bbc", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=BBC_NEWS, help="the bbc-news folder (default: %(default)s)")
    parser.add_argument("--articles", type=int, default=500, help="articles in the feed (default: %(default)s)")
    args = parser.parse_args()
    articles = load_articles(args.data, args.articles)
    print(f"Feed ingestion benchmark: {len(articles)} BBC News articles from {args.data}, served on 127.0.0.1")
    print_machine()
    with tempfile.TemporaryDirectory(prefix="citebot-bench-feed-") as scratch, Site() as site:
        os.environ["CITEBOT_DATA_DIR"] = scratch
        os.environ["CITEBOT_CHROMA_HOST"] = ""  # always the embedded Chroma
        os.environ["CITEBOT_ALLOW_PRIVATE_URLS"] = "true"  # the site is on 127.0.0.1
        feed = publish(site, articles)
        run(site, feed, Path(scratch))


def load_articles(data: Path, count: int) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of the first articles of each category, taken in turn, `count` in all."""
    files = bbc_files_by_category(data)
    if not all(files):  # a missing or an empty category folder
        sys.exit(f"the BBC News corpus is not at {data} (one folder per category); set CITEBOT_BENCH_DATA")
    articles = []
    for index in range(count):
        path = files[index % len(files)][index // len(files)]
        lines = [line.strip() for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]
        articles.append((lines[0], lines[1:]))
    return articles


def publish(site: Site, articles: list[tuple[str, list[str]]]) -> str:
    start = datetime(2005, 1, 3, 6, 0, tzinfo=UTC)
    items = []
    for index, (title, paragraphs) in enumerate(articles):
        published = (start + timedelta(hours=index)).isoformat().replace("+00:00", "Z")
        path = f"/news/{index:04d}.html"
        site.put(path, article_page(title, paragraphs, published=published, author="BBC News"))
        items.append((title, path, published))
    site.put("/feed.xml", rss_feed(site, items, title="BBC News (local copy)"), RSS)
    return site.url("/feed.xml")


def pipeline() -> IngestPipeline:
    """A pipeline as `citebot ingest` builds it: a fresh store, embedder and fetcher from the settings."""
    settings = load_settings()
    embedder = create_embedder(settings.embedding_model, settings.embedding_device)
    return IngestPipeline.for_settings(settings, ChunkStore(settings, embedder), embedder)


def run(site: Site, feed: str, data_dir: Path) -> None:
    print(f"\n1. first run: {feed} ({load_average()})", flush=True)
    first_pipeline = pipeline()
    with Timer() as first_clock:
        first = first_pipeline.run([feed])
    describe(first, first_clock.seconds, first_pipeline.fetcher.requests, len(site.requests))

    print("\n2. re-run, unchanged feed (new store, embedder and fetcher on the same index)", flush=True)
    served = len(site.requests)
    second_pipeline = pipeline()
    with Timer() as second_clock:
        second = second_pipeline.run([feed])
    describe(second, second_clock.seconds, second_pipeline.fetcher.requests, len(site.requests) - served)
    pages = [r for r in site.requests[served:] if r.path.startswith("/news/")]
    ratio = second_clock.seconds / first_clock.seconds
    verdict = "meets" if ratio <= RERUN_GOAL and not pages else "MISSES"
    print(f"   re-run / first run = {second_clock.seconds:.2f} / {first_clock.seconds:.2f} s = {100 * ratio:.2f} %")
    print(f"   article pages fetched on the re-run: {len(pages)} (goal: 0, and <= 5 % of the time: {verdict})")
    print(f"   requests of the re-run: {[(r.path, r.status) for r in site.requests[served:]]}")

    print("\n3. the same re-run as a `citebot ingest FEED --json` process", flush=True)
    served = len(site.requests)
    env = {**os.environ, "CITEBOT_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "citebot"), "ingest", feed, "--json"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    print(f"   exit {result.returncode}: {result.stdout.strip() or result.stderr.strip()[-300:]}")
    print(f"   {seconds:.2f} s wall ({100 * seconds / first_clock.seconds:.2f} % of run 1), interpreter and imports")
    print(f"   included; {len(site.requests) - served} request(s) served")
    print(f"\n{load_average()} at the end")


def describe(report: IngestReport, seconds: float, requests: int, served: int) -> None:
    print(
        f"   {report.added} added, {report.changed} changed, {report.unchanged} unchanged, "
        f"{len(report.failed)} failed; {report.chunks_written} chunks written"
    )
    for problem in report.failed[:5]:
        print(f"     {problem.source}: {problem.reason}")
    print(f"   {seconds:.2f} s wall; {requests} HTTP request(s) made by the fetcher, {served} served by the site")


if __name__ == "__main__":
    main()
