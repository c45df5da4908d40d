"""A small news site on 127.0.0.1 for tests and benchmarks: pages, feeds, sitemaps, and the faults of the web.

Why a real HTTP server: fetching is about what happens on the wire (redirects, conditional requests, slow or huge
bodies, wrong content types), and only a server exercises the real client. Every resource has an ETag and a
Last-Modified date and answers conditional requests with 304, like a well-behaved site; `requests` records every
request, so a test can count what a re-run fetched.

    with Site() as site:
        site.put("/news/a.html", article_page("Title", ["First paragraph."], published="2025-06-04"))
        site.put("/feed.xml", rss_feed(site, [("Title", "/news/a.html", "2025-06-04T09:30:00Z")]), RSS)
        ... site.url("/feed.xml") ...
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

HTML = "text/html; charset=utf-8"
RSS = "application/rss+xml"
ATOM = "application/atom+xml"
XML = "application/xml"
ROBOTS = "User-agent: *\nDisallow: /private/\n"


@dataclass
class Resource:
    body: bytes
    content_type: str = HTML
    status: int = 200
    location: str | None = None  # for redirects
    delay: float = 0.0  # seconds before the response starts
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    status: int


class Site:
    """The server runs in a thread; `put` and `remove` change the site while it runs."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {"/robots.txt": Resource(ROBOTS.encode(), "text/plain")}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-site", daemon=True)

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def put(self, path: str, body: str | bytes, content_type: str = HTML, **options: object) -> Resource:
        """Serve `body` at `path` (replacing what was there: a new version gets a new ETag and date)."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        resource = Resource(data, content_type, **options)  # type: ignore[arg-type]
        with self._lock:
            self.resources[path] = resource
        return resource

    def redirect(self, path: str, target: str, status: int = 301) -> None:
        self.put(path, b"", "text/plain", status=status, location=target)

    def remove(self, path: str) -> None:
        with self._lock:
            self.resources.pop(path, None)

    def fetched(self, path: str | None = None, status: int | None = None) -> list[Request]:
        """Requests so far (robots.txt excluded), optionally for one path or with one status."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path != "/robots.txt"
                and (path is None or r.path == path)
                and (status is None or r.status == status)
            ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                return

            def do_GET(self) -> None:
                with site._lock:
                    resource = site.resources.get(self.path.split("?", 1)[0])
                self._respond(resource)

            def _record(self, status: int) -> None:
                """Recorded before the response goes out, so a client that has it always finds the record."""
                with site._lock:
                    site.requests.append(Request("GET", self.path, dict(self.headers.items()), status))
                self.send_response(status)

            def _respond(self, resource: Resource | None) -> None:
                if resource is None:
                    self._send(404, b"<html><body><h1>Not found</h1></body></html>", HTML, None)
                    return
                if resource.delay:
                    site._stopping.wait(resource.delay)
                if resource.location is not None:
                    self._record(resource.status)
                    self.send_header("Location", resource.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self._not_modified(resource):
                    self._record(304)
                    self.send_header("ETag", resource.etag)
                    self.end_headers()
                else:
                    self._send(resource.status, resource.body, resource.content_type, resource)

            def _not_modified(self, resource: Resource) -> bool:
                tags = self.headers.get("If-None-Match")
                if tags is not None:
                    return resource.etag in [tag.strip() for tag in tags.split(",")]
                since = self.headers.get("If-Modified-Since")
                if since:
                    try:
                        return resource.modified <= parsedate_to_datetime(since)
                    except (TypeError, ValueError):
                        return False
                return False

            def _send(self, status: int, body: bytes, content_type: str, resource: Resource | None) -> None:
                self._record(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                if resource is not None and status == 200:
                    self.send_header("ETag", resource.etag)
                    self.send_header("Last-Modified", format_datetime(resource.modified, usegmt=True))
                if resource is None or resource.send_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (cap, timeout)
                    self.wfile.write(body)

        return Handler


# -- content -----------------------------------------------------------------------------------------------

BOILERPLATE = (
    "NAVIGATION-MENU-ITEM",
    "COOKIE-BANNER-TEXT",
    "SPONSORED-AD-TEXT",
    "COMMENT-TEXT",
    "FOOTER-TEXT",
    "NEWSLETTER-SIGNUP",
)


def article_page(
    title: str,
    paragraphs: list[str],
    *,
    published: str | None = None,
    author: str | None = "Jane Reporter",
    headings: dict[int, str] | None = None,
    og_title: bool = True,
) -> str:
    """A news article the way sites serve them: menus, a cookie banner, ads, related links and comments around
    the article, with the usual metadata in <head>. `headings` puts a subheading before paragraph i; without
    `og_title` the only title in <head> is "<title> | Harwick Gazette" (the headline is still the page's <h1>)."""
    meta = []
    if og_title:
        meta.append(f'<meta property="og:title" content="{html.escape(title)}">')
    if published:
        meta.append(f'<meta property="article:published_time" content="{published}">')
    if author:
        meta.append(f'<meta name="author" content="{html.escape(author)}">')
    body = []
    for index, paragraph in enumerate(paragraphs):
        if headings and index in headings:
            body.append(f"<h2>{html.escape(headings[index])}</h2>")
        body.append(f"<p>{html.escape(paragraph)}</p>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} | Harwick Gazette</title>
{"".join(meta)}
<script>window.analytics = {{"track": true}};</script>
<style>.ad {{ float: right; }}</style>
</head><body>
<header><nav class="menu"><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a>
<a href="/weather">Weather</a> <span>NAVIGATION-MENU-ITEM</span></nav></header>
<div id="cookie-banner" class="cookie-consent"><p>We use cookies to improve your experience. COOKIE-BANNER-TEXT
<button>Accept all cookies</button></p></div>
<aside class="ad advert sidebar"><p>Advertisement: cheap flights to anywhere this summer! SPONSORED-AD-TEXT</p></aside>
<main><article>
<h1>{html.escape(title)}</h1>
<p class="byline">By {html.escape(author or "Staff")}</p>
{"".join(body)}
</article></main>
<aside class="related"><h3>Related stories</h3><ul><li><a href="/news/other">Another story</a></li></ul></aside>
<section id="comments" class="comments"><h3>Comments (2)</h3>
<div class="comment"><p>COMMENT-TEXT I think the council has got this completely wrong, as usual.</p></div>
<div class="comment"><p>COMMENT-TEXT Does anyone know when the consultation closes?</p></div></section>
<div class="newsletter"><form><p>Sign up to our newsletter NEWSLETTER-SIGNUP</p><input name="email"></form></div>
<footer><p>FOOTER-TEXT Copyright Harwick Gazette. <a href="/privacy">Privacy</a> <a href="/terms">Terms</a></p></footer>
</body></html>"""


FeedItem = tuple[str, str, str]  # (title, path, published ISO 8601)


def rss_feed(site: Site, items: list[FeedItem], title: str = "Harwick Gazette") -> str:
    entries = "".join(
        f"<item><title>{html.escape(item_title)}</title><link>{site.url(path)}</link>"
        f'<guid isPermaLink="false">gazette-{html.escape(path)}</guid>'
        f"<pubDate>{format_datetime(datetime.fromisoformat(published.replace('Z', '+00:00')), usegmt=True)}</pubDate>"
        f"<description>{html.escape(item_title)}</description></item>"
        for item_title, path, published in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{html.escape(title)}</title><link>{site.base}/</link><description>News</description>"
        f"{entries}</channel></rss>"
    )


def atom_feed(site: Site, items: list[FeedItem], title: str = "Harwick Gazette") -> str:
    entries = "".join(
        f'<entry><title>{html.escape(item_title)}</title><link href="{site.url(path)}"/>'
        f"<id>tag:gazette,2025:{html.escape(path)}</id><updated>{published}</updated>"
        f"<published>{published}</published></entry>"
        for item_title, path, published in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{html.escape(title)}</title><id>tag:gazette,2025:feed</id><updated>2025-09-10T08:00:00Z</updated>"
        f"{entries}</feed>"
    )


def sitemap(site: Site, pages: list[tuple[str, str | None]]) -> str:
    """A `<urlset>` of (path, lastmod)."""
    urls = "".join(
        f"<url><loc>{site.url(path)}</loc>{f'<lastmod>{lastmod}</lastmod>' if lastmod else ''}</url>"
        for path, lastmod in pages
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'


def sitemap_index(site: Site, paths: list[str]) -> str:
    maps = "".join(f"<sitemap><loc>{site.url(path)}</loc></sitemap>" for path in paths)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{maps}</sitemapindex>'
    )
