"""Web sources: a URL is a page, an RSS/Atom feed or a sitemap; `WebScanner` turns it into loaded documents.

- A page's main text is extracted with trafilatura (no menus, cookie banners, ads or comments), as Markdown so
  its headings guide the splitter; title, author and publication date come from the page's metadata.
- A feed (RSS 2.0, Atom, RDF; parsed by feedparser) or a sitemap (`<urlset>`, and `<sitemapindex>` whose child
  sitemaps are read in turn) lists pages. Entries are keyed by guid (else link) and carry a version (the entry's
  updated/published stamp, a sitemap's `<lastmod>`). An entry whose version matches the one stored with its
  document is not fetched at all; a changed or new one is fetched with the validators of its last fetch.
- The feed itself is fetched conditionally with the validators stored after its last complete run, so an
  unchanged feed costs one request that comes back 304 and nothing else.
A page or entry that cannot be fetched is a one-line failure; its previous version stays in the index. An entry
that left the feed stays too, unless the run prunes (`--prune`). The source of a page is its URL, as given on the
command line or as the feed links to it; the record's `url` is where the text was found after redirects.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urljoin

from bot.dates import from_timestamp, normalize, now_iso
from bot.errors import FetchError, IngestError
from bot.types import DocumentRecord, FeedState, WebSource
from ingest.fetch import Fetched, Fetcher
from ingest.indexer import Problem, Scanned
from ingest.loaders import FRONT_MATTER, Document
from ingest.splitter import content_hash

log = logging.getLogger(__name__)

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
XML_TYPES = frozenset(
    {"application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/xml", "text/xml"}
)
# A sitemap index may list many sitemaps; one run reads at most this many of them.
MAX_CHILD_SITEMAPS = 50
UNSUPPORTED = "citebot reads HTML pages, RSS/Atom feeds and sitemaps"

Kind = Literal["page", "feed", "sitemap", "sitemapindex"]
_SITEMAP_MARKERS: tuple[tuple[bytes, Kind], ...] = ((b"<sitemapindex", "sitemapindex"), (b"<urlset", "sitemap"))
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Entry:
    """One page a feed or sitemap lists."""

    key: str  # the guid (or the link when there is none)
    link: str
    title: str = ""
    published: str | None = None
    version: str | None = None  # what changes when the entry is updated; None when the listing says nothing


@dataclass
class WebScan:
    """What scanning URLs found, in the terms of the ingestion plan."""

    scanned: dict[str, Scanned] = field(default_factory=dict)  # source -> freshly fetched page
    unchanged: dict[str, WebSource] = field(default_factory=dict)  # source -> state, for pages not fetched or 304
    failed: list[Problem] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)  # sources that failed: their previous version stays
    gone: set[str] = field(default_factory=set)  # sources a listing no longer lists (removed by --prune)
    moved: set[str] = field(default_factory=set)  # sources whose entry now links elsewhere (always replaced)
    feeds: list[FeedState] = field(default_factory=list)  # listings read whole, without a failure


def classify(fetched: Fetched) -> Kind:
    """What a response is, from its media type and its first bytes (servers often label feeds loosely)."""
    head = fetched.body[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    looks_xml = head.startswith(b"<?xml") or head.startswith((b"<rss", b"<feed", b"<rdf:rdf", b"<urlset", b"<sitemap"))
    if fetched.media_type in XML_TYPES or (looks_xml and fetched.media_type in ("", "text/plain", *HTML_TYPES)):
        for marker, kind in _SITEMAP_MARKERS:
            if marker in head:
                return kind
        if any(marker in head for marker in (b"<rss", b"<feed", b"<rdf:rdf", b"<channel")):
            return "feed"
        if b"<html" in head:
            return "page"
        raise FetchError(f"an XML document that is neither a feed nor a sitemap; {UNSUPPORTED}")
    if fetched.media_type in HTML_TYPES or (not fetched.media_type and head.startswith((b"<!doctype html", b"<html"))):
        return "page"
    shown = fetched.media_type or "no content type"
    raise FetchError(f"unsupported content type {shown}; {UNSUPPORTED}")


def page_document(fetched: Fetched, source: str, origin: str, entry: Entry | None = None) -> Document:
    """The page's main text and metadata as a `Document` (the feed entry fills in a missing title or date)."""
    import trafilatura  # a heavy import (lxml, htmldate): only runs that fetch pages pay for it

    logging.getLogger("trafilatura").setLevel(logging.ERROR)  # it warns about every odd page; we report once
    markup = fetched.text() if fetched.charset else fetched.body
    result = trafilatura.extract_with_metadata(
        markup,
        url=fetched.final_url,
        output_format="markdown",
        favor_precision=True,  # a little less text rather than a byline, a newsletter box or a comment
        include_comments=False,
        include_tables=True,
        date_extraction_params={"original_date": True, "extensive_search": False},
    )
    text = FRONT_MATTER.sub("", result.text or "", count=1).strip() if result is not None else ""
    if not text:
        raise IngestError("no article text found on the page; is it a page of links, or built by JavaScript?")
    title = _headline(markup) or (result.title if result is not None else None) or (entry.title if entry else "")
    title = title or source
    published = (entry.published if entry else None) or normalize(result.date if result is not None else None)
    return Document(
        text=text + "\n",
        source=source,
        title=" ".join(title.split()),
        published=published,
        url=fetched.final_url,
        author=(result.author or None) if result is not None else None,
        origin=origin,
    )


def _headline(markup: str | bytes) -> str | None:
    """The page's own headline, its first <h1> (inside the article when there is one): the <title> in <head> often
    carries the site's name ("Harbour bridge repairs delayed | Portside Gazette")."""
    from lxml import html as lxml_html

    try:
        tree = lxml_html.fromstring(markup)
    except (ValueError, TypeError, lxml_html.etree.ParserError):
        return None
    for path in ("//article//h1", "//main//h1", "//h1"):
        for heading in tree.xpath(path):
            text = " ".join(heading.text_content().split())
            if text and len(text) <= 300:
                return str(text)
    return None


def read_feed(fetched: Fetched) -> list[Entry]:
    import feedparser  # only runs that read feeds pay for the import

    # Bytes, never a URL or a path: feedparser would fetch or open those itself, past every check of ours.
    parsed = feedparser.parse(
        fetched.body, response_headers={"content-location": fetched.final_url, "content-type": "application/xml"}
    )
    if parsed.get("bozo") and not parsed.entries:
        problem = type(parsed.get("bozo_exception")).__name__
        raise FetchError(f"not a readable RSS or Atom feed ({problem}); check the URL in a browser")
    entries = []
    for item in parsed.entries:
        link = item.get("link") or next((ln.get("href") for ln in item.get("links", []) if ln.get("href")), None)
        if not link:
            continue
        link = urljoin(fetched.final_url, link)
        stamp = item.get("published_parsed") or item.get("updated_parsed")
        published = from_timestamp(_struct_datetime(stamp)) if stamp else None
        version = item.get("updated") or item.get("published")
        if not version:  # no dates at all: what the entry says stands for its version
            summary = f"{item.get('title', '')}\n{item.get('summary', '')}\n{link}"
            version = "sha256:" + hashlib.sha256(summary.encode("utf-8")).hexdigest()[:16]
        entries.append(Entry(str(item.get("id") or link), link, str(item.get("title", "")), published, str(version)))
    return entries


def read_sitemap(fetched: Fetched) -> tuple[list[Entry], list[str]]:
    """(pages, child sitemaps) of a `<urlset>` or `<sitemapindex>`."""
    from lxml import etree  # parsed without entities or network access: a sitemap is untrusted input

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(fetched.body, parser)
    except etree.XMLSyntaxError as exc:
        raise FetchError(f"not a readable sitemap ({exc.msg}); check the URL in a browser") from None
    pages, children = [], []
    for item in root.iter("{*}url"):
        location = (item.findtext("{*}loc") or "").strip()
        if location:
            lastmod = (item.findtext("{*}lastmod") or "").strip() or None
            link = urljoin(fetched.final_url, location)
            # <lastmod> says when a page changed, not when it was published; a news sitemap says that too.
            published = normalize(item.findtext(".//{*}publication_date"))
            title = " ".join((item.findtext(".//{*}title") or "").split())
            pages.append(Entry(link, link, title, published, lastmod))
    for item in root.iter("{*}sitemap"):
        location = (item.findtext("{*}loc") or "").strip()
        if location:
            children.append(urljoin(fetched.final_url, location))
    return pages, children


def _struct_datetime(stamp: time.struct_time) -> datetime:
    return datetime(*stamp[:6], tzinfo=UTC)


class WebScanner:
    """Scans URL targets against what the index holds. Made per ingestion run, from the records it read."""

    def __init__(
        self,
        fetcher: Fetcher,
        existing: Mapping[str, DocumentRecord],
        feeds: Mapping[str, FeedState],
        progress: Progress | None = None,
        prune: bool = False,
    ) -> None:
        self._fetcher = fetcher
        # Pruning needs today's list of entries: a 304 would only say it has not changed since the last run.
        self._feeds = {} if prune else feeds
        self._progress = progress or (lambda stage, done, total: None)
        self._pages = {source: state for record in existing.values() for source, state in record.web.items()}
        self._listed: dict[str, dict[str, tuple[str, WebSource]]] = {}  # listing -> entry key -> (source, state)
        for source, state in sorted(self._pages.items()):
            if state.feed and state.entry:
                self._listed.setdefault(state.feed, {})[state.entry] = (source, state)

    def scan(self, urls: list[str]) -> WebScan:
        result = WebScan()
        for url in dict.fromkeys(urls):
            self._target(url, result, top=True)
        result.moved -= set(result.scanned) | set(result.unchanged) | result.kept
        return result

    def _target(self, url: str, result: WebScan, top: bool) -> None:
        listing, page = self._feeds.get(url), self._pages.get(url) if top else None
        validators = listing or page
        try:
            fetched = self._get(url, validators)
            if fetched is None:
                if listing is not None:
                    for source, state in self._listed.get(url, {}).values():
                        result.unchanged[source] = state
                elif page is not None:
                    result.unchanged[url] = page
                return
            kind = classify(fetched)
            if kind == "page" and top:
                result.scanned[url] = _scanned(fetched, url, "url")
            elif kind == "sitemapindex" and top:
                for child in read_sitemap(fetched)[1][:MAX_CHILD_SITEMAPS]:
                    self._target(child, result, top=False)
            elif kind in ("feed", "sitemap"):
                self._listing(url, fetched, kind, result)
            else:
                raise FetchError(f"a sitemap index lists a {kind}, not a sitemap; {UNSUPPORTED}")
        except IngestError as exc:
            result.failed.append(Problem(url, str(exc)))
            result.kept.add(url)

    def _get(self, url: str, previous: FeedState | WebSource | None) -> Fetched | None:
        """`url`, asked for with the validators of its previous fetch (if any); None when unchanged."""
        return self._fetcher.get(url, previous.etag if previous else None, previous.last_modified if previous else None)

    def _listing(self, url: str, fetched: Fetched, kind: Kind, result: WebScan) -> None:
        entries = read_feed(fetched) if kind == "feed" else read_sitemap(fetched)[0]
        entries = list({entry.link: entry for entry in reversed(entries)}.values())[::-1]  # first of each link wins
        known = self._listed.get(url, {})
        todo: list[Entry] = []
        for entry in entries:
            previous = known.get(entry.key)
            if previous is not None:
                source, state = previous
                if source != entry.link:
                    result.moved.add(source)  # the entry now links elsewhere: its old page is replaced
                elif entry.version is not None and state.version == entry.version:
                    result.unchanged[source] = state
                    continue
            todo.append(entry)
        complete = self._fetch_entries(url, "feed" if kind == "feed" else "sitemap", todo, result)
        listed = {entry.link for entry in entries}
        result.gone.update(source for source, _ in known.values() if source not in listed)
        if complete:
            result.feeds.append(FeedState(url, now_iso(), fetched.etag, fetched.last_modified))

    def _fetch_entries(self, listing: str, origin: str, entries: list[Entry], result: WebScan) -> bool:
        """Fetch the entries' pages, a few at a time; True when every one of them came in."""
        if not entries:
            return True

        def fetch(entry: Entry) -> Scanned | WebSource:
            previous = self._pages.get(entry.link)
            fetched = self._get(entry.link, previous)
            if fetched is None:
                if previous is None:
                    raise FetchError("the site answered 304 Not Modified to a plain request; try again later")
                return replace(previous, feed=listing, entry=entry.key, version=entry.version)
            if classify(fetched) != "page":
                raise FetchError(f"the {origin} entry links to a feed or sitemap, not a page; {UNSUPPORTED}")
            return _scanned(fetched, entry.link, origin, entry, listing)

        complete = True
        with ThreadPoolExecutor(max_workers=self._fetcher.options.concurrency, thread_name_prefix="fetch") as pool:
            futures = [(entry, pool.submit(fetch, entry)) for entry in entries]
            for done, (entry, future) in enumerate(futures, start=1):
                try:
                    outcome = future.result()
                except IngestError as exc:
                    result.failed.append(Problem(entry.link, str(exc)))
                    result.kept.add(entry.link)
                    complete = False
                else:
                    if isinstance(outcome, Scanned):
                        result.scanned[entry.link] = outcome
                    else:
                        result.unchanged[entry.link] = outcome
                self._progress("fetch", done, len(entries))
        return complete


def _scanned(
    fetched: Fetched, source: str, origin: str, entry: Entry | None = None, listing: str | None = None
) -> Scanned:
    """A fetched page as a document to index, with the state its next fetch starts from (and the feed or sitemap
    entry that listed it, if any)."""
    document = page_document(fetched, source, origin, entry)
    state = WebSource(
        now_iso(),
        fetched.etag,
        fetched.last_modified,
        listing,
        entry.key if entry is not None else None,
        entry.version if entry is not None else None,
    )
    return Scanned(document, content_hash(document.text), state)
