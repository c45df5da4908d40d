"""Web sources end to end against a local news site (tests/web_site.py): pages, feeds, sitemaps and the faults of
the web, through the real fetcher, extractor and ingestion pipeline (hashing embedder)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bot.config import Settings
from bot.embeddings import HashingEmbedder
from bot.errors import BlockedURL
from bot.store import ChunkStore
from bot.types import DocumentRecord
from ingest.fetch import Fetcher, FetchOptions, _GuardedBackend, check_address
from ingest.pipeline import IngestPipeline, IngestReport
from tests.conftest import citebot, cli_env
from tests.web_site import ATOM, BOILERPLATE, RSS, XML, Site, article_page, atom_feed, rss_feed, sitemap, sitemap_index

ARTICLES = {
    "/news/bridge-cost.html": (
        "Harwick bridge cost rises to £2.8bn",
        [
            "The estimated cost of the Harwick bridge has risen to £2.8bn, the council said on Monday.",
            "Officials blamed the price of steel and a longer planning inquiry for the increase.",
            "Opposition councillors called for an independent review of the whole scheme.",
        ],
        "2025-06-04T09:30:00Z",
    ),
    "/news/ferry-strike.html": (
        "Ferry crews vote to strike over pay",
        [
            "Crews on the Wend estuary ferry have voted to strike for three days in July.",
            "The operator said it was disappointed and would keep talking to the union.",
        ],
        "2025-06-10T07:00:00Z",
    ),
    "/news/library-reopens.html": (
        "Harwick library reopens after repairs",
        [
            "The town library reopened on Saturday after eighteen months of roof repairs.",
            "Visitors queued from early morning to see the restored reading room.",
        ],
        "2025-06-12T12:00:00Z",
    ),
}
NEW_ARTICLE = (
    "/news/market-returns.html",
    "Saturday market returns to the square",
    ["The Saturday market will return to the square next month after a two-year break."],
    "2025-06-20T08:00:00Z",
)


def publish(site: Site, path: str, title: str, paragraphs: list[str], published: str, **options: object) -> None:
    site.put(path, article_page(title, paragraphs, published=published), **options)


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        for path, (title, paragraphs, published) in ARTICLES.items():
            publish(running, path, title, paragraphs, published)
        running.put("/feed.xml", rss_feed(running, [(t, p, d) for p, (t, _, d) in ARTICLES.items()]), RSS)
        yield running


def pipeline(store: ChunkStore, embedder: HashingEmbedder, **options: object) -> IngestPipeline:
    fetch = FetchOptions(**{"allow_private": True, "timeout": 2.0, **options})  # type: ignore[arg-type]
    return IngestPipeline(store, embedder, fetcher=Fetcher(fetch))


def document_text(store: ChunkStore, record: DocumentRecord) -> str:
    chunks = sorted((chunk for chunk, _ in store.chunks_of([record.doc_id])), key=lambda chunk: chunk.position)
    return "\n".join(chunk.text for chunk in chunks)


def by_source(store: ChunkStore) -> dict[str, DocumentRecord]:
    return {source: record for record in store.documents().values() for source in record.sources}


def counts(report: IngestReport) -> tuple[int, int, int, int, int]:
    return report.added, report.changed, report.unchanged, report.removed, len(report.failed)


# -- pages -----------------------------------------------------------------------------------------------------


def test_a_page_is_its_article_without_the_boilerplate(site: Site, store: ChunkStore, embedder: HashingEmbedder):
    url = site.url("/news/bridge-cost.html")
    report = pipeline(store, embedder).run([url])
    assert counts(report) == (1, 0, 0, 0, 0)
    record = by_source(store)[url]
    text = document_text(store, record)
    for paragraph in ARTICLES["/news/bridge-cost.html"][1]:
        assert paragraph in text
    leaked = [marker for marker in BOILERPLATE if marker in text]
    assert not leaked, f"boilerplate in the extracted text: {leaked}"
    assert "Accept all cookies" not in text and "Related stories" not in text
    assert record.title == "Harwick bridge cost rises to £2.8bn"
    assert record.author == "Jane Reporter"
    assert record.published == "2025-06-04"
    assert (record.url, record.origin, record.sources) == (url, "url", (url,))
    assert record.fetched is not None and record.web[url].etag


def test_a_rerun_asks_conditionally_and_fetches_nothing_unchanged(site, store, embedder):
    url = site.url("/news/bridge-cost.html")
    pipeline(store, embedder).run([url])
    before = store.documents()
    report = pipeline(store, embedder).run([url])
    assert counts(report) == (0, 0, 1, 0, 0) and report.chunks_written == 0
    [request] = site.fetched("/news/bridge-cost.html", status=304)
    assert request.headers.get("If-None-Match") == site.resources["/news/bridge-cost.html"].etag
    assert store.documents() == before


def test_a_changed_page_replaces_its_document(site, store, embedder):
    url = site.url("/news/bridge-cost.html")
    pipeline(store, embedder).run([url])
    title, paragraphs, published = ARTICLES["/news/bridge-cost.html"]
    publish(
        site, "/news/bridge-cost.html", title, [*paragraphs, "The council will vote on the plan in July."], published
    )
    report = pipeline(store, embedder).run([url])
    assert counts(report) == (0, 1, 0, 0, 0)
    [record] = store.documents().values()
    assert "vote on the plan in July" in document_text(store, record)


def test_redirects_are_followed_and_the_source_stays_the_url_asked_for(site, store, embedder):
    site.redirect("/old/bridge", "/moved/bridge", 301)
    site.redirect("/moved/bridge", site.url("/news/bridge-cost.html"), 302)
    url = site.url("/old/bridge")
    report = pipeline(store, embedder).run([url])
    assert counts(report) == (1, 0, 0, 0, 0)
    record = by_source(store)[url]
    assert record.url == site.url("/news/bridge-cost.html")


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda site: site.remove("/news/bridge-cost.html"), "not found (HTTP 404)"),
        (lambda site: site.put("/news/bridge-cost.html", b"\x89PNG\r\n", "image/png"), "unsupported content type"),
        (lambda site: site.put("/news/bridge-cost.html", '{"a": 1}', "application/json"), "application/json"),
        (lambda site: site.put("/news/bridge-cost.html", "<p>" + "x" * 300_000, "text/html"), "too large"),
        (
            lambda site: site.put("/news/bridge-cost.html", "<p>" + "y" * 300_000, "text/html", send_length=False),
            "too large (over",
        ),
        (lambda site: site.resources["/news/bridge-cost.html"].__setattr__("delay", 3.0), "timed out"),
        (lambda site: site.put("/robots.txt", "User-agent: *\nDisallow: /news/\n", "text/plain"), "robots.txt"),
        (lambda site: site.redirect("/news/bridge-cost.html", "/news/bridge-cost.html"), "too many redirects"),
        (lambda site: site.redirect("/news/bridge-cost.html", "ftp://127.0.0.1/bridge"), "only http:// and https://"),
        (
            lambda site: site.put(
                "/news/bridge-cost.html", '<html><body><div id="app"></div><script>x()</script></body>'
            ),
            "no article text",
        ),
    ],
    ids=["404", "image", "json", "too-large", "too-large-streamed", "slow", "robots", "loop", "ftp", "empty"],
)
def test_a_failing_page_is_one_line_and_keeps_its_previous_version(site, store, embedder, setup, reason):
    url = site.url("/news/bridge-cost.html")
    fetch = {"max_bytes": 200_000, "timeout": 0.5}
    assert counts(pipeline(store, embedder, **fetch).run([url])) == (1, 0, 0, 0, 0)
    before = store.documents()
    setup(site)
    report = pipeline(store, embedder, **fetch).run([url])
    assert [problem.source for problem in report.failed] == [url]
    message = report.failed[0].reason
    assert reason in message and "\n" not in message, message
    assert report.exit_code == 1 and (report.added, report.changed, report.removed) == (0, 0, 0)
    assert store.documents() == before, "the previous version stays in the index"


def test_loopback_is_refused_without_the_setting(site, store, embedder):
    report = IngestPipeline(store, embedder).run([site.url("/news/bridge-cost.html")])  # default: private refused
    [problem] = report.failed
    assert "loopback" in problem.reason and "CITEBOT_ALLOW_PRIVATE_URLS=true" in problem.reason
    assert site.requests == [], "nothing reached the server, not even robots.txt"
    assert store.documents() == {}


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-public"),
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    with pytest.raises(BlockedURL, match=kind):
        check_address("example.test", address, allow_private=False)
    check_address("example.test", address, allow_private=True)
    check_address("example.test", "93.184.216.34", allow_private=False)


def test_the_guard_checks_the_address_a_name_resolves_to() -> None:
    """The check sits where the connection is made, so a name (or a redirect to one) cannot hide a local address."""
    with pytest.raises(BlockedURL, match=r"localhost \(127\.0\.0\.1\) is a loopback address"):
        _GuardedBackend(allow_private=False).connect_tcp("localhost", 9)


def test_only_http_urls_are_fetched() -> None:
    for url in ("ftp://example.com/x", "file:///etc/passwd", "gopher://x", "http:///nohost"):
        with pytest.raises(BlockedURL):
            Fetcher().get(url)


# -- feeds and sitemaps ----------------------------------------------------------------------------------------


def test_a_feed_ingests_each_entry_and_an_unchanged_rerun_fetches_only_the_feed(site, store, embedder):
    feed = site.url("/feed.xml")
    report = pipeline(store, embedder).run([feed])
    assert counts(report) == (3, 0, 0, 0, 0)
    records = by_source(store)
    assert set(records) == {site.url(path) for path in ARTICLES}
    bridge = records[site.url("/news/bridge-cost.html")]
    assert (bridge.origin, bridge.published) == ("feed", "2025-06-04T09:30:00+00:00")
    assert bridge.web[bridge.source].feed == feed
    assert feed not in records, "the feed itself is not a document"

    requests = len(site.fetched())
    report = pipeline(store, embedder).run([feed])
    assert counts(report) == (0, 0, 3, 0, 0) and report.chunks_written == 0
    rerun = site.fetched()[requests:]
    assert [(r.path, r.status) for r in rerun] == [("/feed.xml", 304)], "one conditional request, nothing else"


def test_a_feed_whose_entries_change_between_runs(site, store, embedder):
    feed = site.url("/feed.xml")
    pipeline(store, embedder).run([feed])
    # The next edition: a new story, an updated one, one dropped from the feed, one unchanged.
    path, title, paragraphs, published = NEW_ARTICLE
    publish(site, path, title, paragraphs, published)
    ferry_title, ferry_paragraphs, _ = ARTICLES["/news/ferry-strike.html"]
    publish(site, "/news/ferry-strike.html", ferry_title, [*ferry_paragraphs, "The strike was called off."], "")
    items = [
        (title, path, published),
        (ferry_title, "/news/ferry-strike.html", "2025-06-21T10:00:00Z"),  # a new date: the entry changed
        ("Harwick library reopens after repairs", "/news/library-reopens.html", "2025-06-12T12:00:00Z"),
    ]
    site.put("/feed.xml", rss_feed(site, items), RSS)
    requests = len(site.fetched())

    report = pipeline(store, embedder).run([feed])
    assert counts(report) == (1, 1, 1, 0, 0)
    fetched = sorted(r.path for r in site.fetched()[requests:])
    assert fetched == ["/feed.xml", "/news/ferry-strike.html", path], "only new and changed entries are fetched"
    records = by_source(store)
    assert site.url("/news/bridge-cost.html") in records, "an entry that left the feed stays without --prune"
    assert "called off" in document_text(store, records[site.url("/news/ferry-strike.html")])

    report = pipeline(store, embedder).run([feed], prune=True)
    assert counts(report) == (0, 0, 3, 1, 0)
    assert site.url("/news/bridge-cost.html") not in by_source(store)


def test_an_entry_that_fails_is_retried_and_the_feed_is_not_marked_done(site, store, embedder):
    feed = site.url("/feed.xml")
    site.remove("/news/ferry-strike.html")
    report = pipeline(store, embedder).run([feed])
    assert counts(report) == (2, 0, 0, 0, 1)
    assert report.failed[0].source == site.url("/news/ferry-strike.html")
    assert store.feed_states() == {}, "validators are stored only for a feed taken in whole"

    title, paragraphs, published = ARTICLES["/news/ferry-strike.html"]
    publish(site, "/news/ferry-strike.html", title, paragraphs, published)
    requests = len(site.fetched())
    report = pipeline(store, embedder).run([feed])
    assert counts(report) == (1, 0, 2, 0, 0)
    assert sorted(r.path for r in site.fetched()[requests:]) == ["/feed.xml", "/news/ferry-strike.html"]
    assert set(store.feed_states()) == {feed}
    requests = len(site.fetched())
    assert counts(pipeline(store, embedder).run([feed])) == (0, 0, 3, 0, 0)
    assert [r.status for r in site.fetched()[requests:]] == [304]


def test_an_entry_that_moves_to_a_new_link_replaces_its_old_page(site, store, embedder):
    feed = site.url("/feed.xml")
    pipeline(store, embedder).run([feed])
    title, paragraphs, published = ARTICLES["/news/library-reopens.html"]
    publish(site, "/news/2025/library-reopens.html", title, paragraphs, published)
    items = [(t, p, d) for p, (t, _, d) in ARTICLES.items() if p != "/news/library-reopens.html"]
    # Same guid, new link (the feed's guid is derived from the path, so build this entry by hand).
    moved = rss_feed(site, [*items, (title, "/news/2025/library-reopens.html", published)]).replace(
        "gazette-/news/2025/library-reopens.html", "gazette-/news/library-reopens.html"
    )
    site.put("/feed.xml", moved, RSS)
    report = pipeline(store, embedder).run([feed])
    sources = set(by_source(store))
    assert site.url("/news/2025/library-reopens.html") in sources
    assert site.url("/news/library-reopens.html") not in sources and report.removed == 1


def test_an_atom_feed(site, store, embedder):
    items = [(t, p, d) for p, (t, _, d) in ARTICLES.items()]
    site.put("/atom.xml", atom_feed(site, items), ATOM)
    report = pipeline(store, embedder).run([site.url("/atom.xml")])
    assert counts(report) == (3, 0, 0, 0, 0)
    record = by_source(store)[site.url("/news/library-reopens.html")]
    assert (record.origin, record.published) == ("feed", "2025-06-12T12:00:00+00:00")


def test_a_sitemap_uses_lastmod(site, store, embedder):
    pages = [(path, "2025-06-15") for path in ARTICLES]
    site.put("/sitemap.xml", sitemap(site, pages), XML)
    sitemap_url = site.url("/sitemap.xml")
    assert counts(pipeline(store, embedder).run([sitemap_url])) == (3, 0, 0, 0, 0)
    assert {record.origin for record in store.documents().values()} == {"sitemap"}
    bridge = by_source(store)[site.url("/news/bridge-cost.html")]
    assert bridge.published == "2025-06-04", "published comes from the page; <lastmod> is not a publication date"
    # One page changes and says so in <lastmod>: only it is fetched.
    title, paragraphs, published = ARTICLES["/news/library-reopens.html"]
    publish(site, "/news/library-reopens.html", title, [*paragraphs, "It now opens on Sundays too."], published)
    pages[2] = ("/news/library-reopens.html", "2025-06-16")
    site.put("/sitemap.xml", sitemap(site, pages), XML)
    requests = len(site.fetched())
    report = pipeline(store, embedder).run([sitemap_url])
    assert counts(report) == (0, 1, 2, 0, 0)
    assert sorted(r.path for r in site.fetched()[requests:]) == ["/news/library-reopens.html", "/sitemap.xml"]


def test_a_sitemap_index_reads_its_sitemaps(site, store, embedder):
    paths = list(ARTICLES)
    site.put("/sitemap-a.xml", sitemap(site, [(paths[0], None), (paths[1], None)]), XML)
    site.put("/sitemap-b.xml", sitemap(site, [(paths[2], None)]), XML)
    site.put("/sitemap.xml", sitemap_index(site, ["/sitemap-a.xml", "/sitemap-b.xml"]), XML)
    assert counts(pipeline(store, embedder).run([site.url("/sitemap.xml")])) == (3, 0, 0, 0, 0)


def test_a_dry_run_fetches_but_writes_nothing(site, store, embedder):
    report = pipeline(store, embedder).run([site.url("/feed.xml")], dry_run=True)
    assert report.added == 3 and report.plan is not None and len(report.plan.added) == 3
    assert store.documents() == {} and store.feed_states() == {}


# -- the command line ------------------------------------------------------------------------------------------


def test_cli_ingests_a_feed_with_the_json_summary_of_the_contract(site, settings: Settings, tmp_path):
    env = cli_env(settings, CITEBOT_ALLOW_PRIVATE_URLS="true")
    result = citebot("ingest", site.url("/feed.xml"), "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert list(summary) == [
        "added",
        "changed",
        "unchanged",
        "removed",
        "skipped",
        "failed",
        "chunks_written",
        "seconds",
    ]
    assert (summary["added"], summary["failed"]) == (3, [])

    listed = citebot("sources", "--json", "--origin", "feed", "--since", "2025-06-10", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(row["title"] for row in rows) == [
        "Ferry crews vote to strike over pay",
        "Harwick library reopens after repairs",
    ]
    assert all(row["origin"] == "feed" and row["url"] and row["fetched"] for row in rows)
    table = citebot("sources", env={**env, "COLUMNS": "200"}, cwd=tmp_path)
    assert "feed" in table.stdout and "4 June 2025" in table.stdout
    none = citebot("sources", "--json", "--origin", "file", env=env, cwd=tmp_path)
    assert none.stdout == ""


def test_cli_refuses_loopback_without_the_setting(site, settings: Settings, tmp_path):
    result = citebot("ingest", site.url("/feed.xml"), "--json", env=cli_env(settings), cwd=tmp_path)
    assert result.returncode == 1
    [failure] = json.loads(result.stdout)["failed"]
    assert "loopback" in failure["reason"] and site.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "ftp://example.com/feed.xml"], "only http:// and https://"),
        (["ingest", "https://"], "no host name"),
        (["sources", "--since", "soon"], "is not a date"),
    ],
)
def test_cli_usage_errors_are_one_line(settings: Settings, tmp_path, args: list[str], message: str):
    result = citebot(*args, env=cli_env(settings), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_title_is_the_headline_not_the_browser_title(site: Site, store: ChunkStore, embedder: HashingEmbedder):
    """A page whose only <head> title carries the site's name ("… | Harwick Gazette") is titled by its <h1>."""
    title, paragraphs, published = ARTICLES["/news/bridge-cost.html"]
    site.put("/news/plain-title.html", article_page(title, paragraphs, published=published, og_title=False))
    url = site.url("/news/plain-title.html")
    pipeline(store, embedder).run([url])
    assert by_source(store)[url].title == "Harwick bridge cost rises to £2.8bn"
