"""Fetching web pages, feeds and sitemaps for ingestion, safely and politely.

The rules, and why:
- Only http and https URLs.
- Every connection is checked where it is made: the host name is resolved and citebot connects only to a public
  address (loopback, private, link-local and other non-global addresses are refused unless
  `CITEBOT_ALLOW_PRIVATE_URLS=true`). Checking the address actually connected to, on every redirect hop, leaves
  no gap for a redirect to an internal host or a DNS answer that changes between a check and the connection.
- robots.txt is read once per site (and again after an hour) and obeyed for citebot's User-Agent; as RFC 9309
  says, a robots.txt that cannot be read because of a server or network error means "do not fetch for now".
- Redirects are followed by hand (at most five), so each hop is checked like the first request.
- Timeouts for connecting, for each read and for the whole download; a size cap enforced while streaming, so an
  endless or huge body never fills memory.
- Conditional requests: the `ETag` and `Last-Modified` of the previous fetch are sent back, and 304 Not Modified
  comes back as None ("unchanged"), so a re-run downloads nothing that did not change.
Every failure is a `FetchError` (`BlockedURL` for refusals) whose message is one line saying what to do.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpcore
import httpx

from bot.config import (
    DEFAULT_FETCH_CONCURRENCY,
    DEFAULT_FETCH_MAX_BYTES,
    DEFAULT_FETCH_TIMEOUT,
    DEFAULT_USER_AGENT,
    Settings,
)
from bot.errors import BlockedURL, FetchError

MAX_REDIRECTS = 5
ROBOTS_MAX_BYTES = 500_000
ROBOTS_TTL_SECONDS = 3600.0
_REDIRECTS = {301, 302, 303, 307, 308}
_ALLOW_PRIVATE_HINT = "set CITEBOT_ALLOW_PRIVATE_URLS=true to allow it"


def is_url(text: str) -> bool:
    """Whether a command-line target names a URL (anything with a scheme) rather than a path."""
    return "://" in text


@dataclass(frozen=True)
class FetchOptions:
    allow_private: bool = False
    timeout: float = DEFAULT_FETCH_TIMEOUT
    max_bytes: int = DEFAULT_FETCH_MAX_BYTES
    user_agent: str = DEFAULT_USER_AGENT
    concurrency: int = DEFAULT_FETCH_CONCURRENCY

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchOptions:
        return cls(
            allow_private=settings.allow_private_urls,
            timeout=settings.fetch_timeout,
            max_bytes=settings.fetch_max_bytes,
            user_agent=settings.user_agent,
            concurrency=settings.fetch_concurrency,
        )


@dataclass(frozen=True)
class Fetched:
    """A downloaded resource: `url` as asked, `final_url` after redirects, the media type without parameters."""

    url: str
    final_url: str
    media_type: str
    charset: str | None
    body: bytes
    etag: str | None = None
    last_modified: str | None = None

    def text(self) -> str:
        """The body decoded with the declared charset, else UTF-8, else Latin-1 (which decodes anything)."""
        for encoding in (self.charset, "utf-8"):
            if encoding:
                try:
                    return self.body.decode(encoding)
                except (LookupError, UnicodeDecodeError):
                    continue
        return self.body.decode("latin-1")


class Fetcher:
    """Cheap to construct: the HTTP client is created on the first request. Safe to share between threads."""

    def __init__(self, options: FetchOptions | None = None) -> None:
        self.options = options or FetchOptions()
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._robots: dict[str, tuple[float, RobotFileParser]] = {}
        self._robots_lock = threading.Lock()
        self.requests = 0  # HTTP requests made (robots.txt included): what a re-run should keep near zero

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def get(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched | None:
        """The resource at `url`, or None when the validators show it is unchanged (304 Not Modified)."""
        current = check_url(url)
        conditional = {}
        if etag:
            conditional["If-None-Match"] = etag
        if last_modified:
            conditional["If-Modified-Since"] = last_modified
        too_many = f"too many redirects (more than {MAX_REDIRECTS}); check the URL in a browser"
        with self._follow(current, conditional, too_many, obey_robots=True) as (final, response):
            if response.status_code == 304:
                return None
            if response.status_code >= 400 or response.status_code < 200:
                raise FetchError(_status_reason(response.status_code, response.reason_phrase))
            body = self._read(response)
            media_type, _, parameters = response.headers.get("content-type", "").partition(";")
            return Fetched(
                url=url,
                final_url=final,
                media_type=media_type.strip().lower(),
                charset=_charset(parameters),
                body=body,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )

    # -- plumbing ------------------------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                options = self.options
                self._client = httpx.Client(
                    transport=GuardedTransport(options.allow_private, max_connections=max(4, options.concurrency)),
                    timeout=httpx.Timeout(options.timeout),
                    headers={"User-Agent": options.user_agent},
                    follow_redirects=False,
                    trust_env=False,  # an environment proxy would hide the addresses the guard must see
                )
            return self._client

    @contextmanager
    def _follow(
        self, url: str, headers: dict[str, str], too_many: str, obey_robots: bool = False
    ) -> Iterator[tuple[str, httpx.Response]]:
        """The final URL and response after following redirects by hand, each hop checked like the first request
        (and against robots.txt when `obey_robots`); `too_many` is the message after MAX_REDIRECTS hops."""
        for _ in range(MAX_REDIRECTS + 1):
            if obey_robots:
                self._obey_robots(url)
            with self._stream(url, headers) as response:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    url = check_url(urljoin(url, response.headers["location"]), redirected=True)
                    continue
                yield url, response
                return
        raise FetchError(too_many)

    def _stream(self, url: str, headers: dict[str, str]) -> AbstractContextManager[httpx.Response]:
        with self._lock:
            self.requests += 1
        return self._http().stream("GET", url, headers=headers)

    def _read(self, response: httpx.Response) -> bytes:
        limit = self.options.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(_too_large(int(declared), limit))
        deadline = time.monotonic() + self.options.timeout
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise FetchError(_too_large(size, limit, at_least=True))
                if time.monotonic() > deadline:
                    raise FetchError(f"timed out: the download took over {self.options.timeout:g} s")
                chunks.append(chunk)
        except httpx.DecodingError:
            raise FetchError("the server sent a body that does not decode (bad compression)") from None
        return b"".join(chunks)

    def _obey_robots(self, url: str) -> None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._robots_lock:
            cached = self._robots.get(origin)
            if cached is None or cached[0] < time.monotonic():
                cached = (time.monotonic() + ROBOTS_TTL_SECONDS, self._read_robots(origin))
                self._robots[origin] = cached
        if not cached[1].can_fetch(self.options.user_agent, url):
            raise BlockedURL(f"{origin}/robots.txt does not allow citebot to fetch this page")

    def _read_robots(self, origin: str) -> RobotFileParser:
        """The site's rules; a missing robots.txt (4xx) allows everything, a failing one (5xx) nothing for now."""
        parser = RobotFileParser()
        too_many = f"{origin}/robots.txt redirects too often; citebot waits until it can be read"
        with self._follow(f"{origin}/robots.txt", {}, too_many) as (_, response):
            status = response.status_code
            if 400 <= status < 500:
                parser.parse([])  # no rules: everything is allowed
                return parser
            if status != 200:
                raise FetchError(
                    f"{origin}/robots.txt failed (HTTP {status}); as robots.txt rules ask, citebot waits until "
                    "it can be read"
                )
            parser.parse(self._read_capped(response, ROBOTS_MAX_BYTES).decode("utf-8", "replace").splitlines())
            return parser

    def _read_capped(self, response: httpx.Response, limit: int) -> bytes:
        chunks = []
        size = 0
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
        return b"".join(chunks)[:limit]


def check_url(url: str, redirected: bool = False) -> str:
    """The URL if citebot may ask for it (http or https, with a host); raises BlockedURL otherwise."""
    parts = urlsplit(url.strip())
    where = f"redirected to {url}" if redirected else f"cannot fetch {url}"
    if parts.scheme.lower() not in ("http", "https"):
        raise BlockedURL(f"{where}: citebot fetches only http:// and https:// URLs")
    if not parts.hostname:
        raise BlockedURL(f"{where}: the URL has no host name; write it as https://host/path")
    try:
        httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise BlockedURL(f"not a valid URL ({exc}); check it in a browser") from None
    return url.strip()


def check_address(host: str, address: str, allow_private: bool) -> None:
    """Refuse a non-public address (loopback, private, link-local, multicast, reserved) unless allowed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private or (ip.is_global and not ip.is_multicast):
        return
    kind = next(
        (
            name
            for name, flag in (
                ("unspecified", ip.is_unspecified),
                ("loopback", ip.is_loopback),
                ("link-local", ip.is_link_local),
                ("private", ip.is_private),
                ("multicast", ip.is_multicast),
                ("reserved", ip.is_reserved),
            )
            if flag
        ),
        "non-public",
    )
    shown = host if host == address else f"{host} ({address})"
    raise BlockedURL(f"{shown} is a {kind} address; citebot fetches only public addresses ({_ALLOW_PRIVATE_HINT})")


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself and connects only to an address that `check_address` accepts."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise FetchError(f"cannot resolve {host}; check the host name") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        refusal: BlockedURL | None = None
        for address in addresses:
            try:
                check_address(host, address, self._allow_private)
            except BlockedURL as exc:
                refusal = refusal or exc
                continue
            # TLS still verifies the certificate against `host`: httpcore passes it as the server name.
            return super().connect_tcp(address, port, timeout, local_address, socket_options)
        raise refusal or FetchError(f"cannot resolve {host}; check the host name")


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport over an httpcore pool whose network backend checks every address it connects to.

    Why not `httpx.HTTPTransport`: it offers no public way to choose the network backend, and the guard must sit
    where connections are made. httpcore's errors become one-line `FetchError`s here.
    """

    def __init__(self, allow_private: bool, max_connections: int = 10) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            network_backend=_GuardedBackend(allow_private),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _one_line_errors(request.extensions.get("timeout", {})):
            response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        with _one_line_errors(self._response.extensions.get("timeout", {})):
            yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


@contextmanager
def _one_line_errors(timeouts: dict[str, float | None]) -> Iterator[None]:
    """Turn httpcore's network errors into FetchError with a reason a person can act on."""
    try:
        yield
    except httpcore.TimeoutException:
        seconds = max((value for value in timeouts.values() if value), default=None)
        after = f" after {seconds:g} s" if seconds else ""
        raise FetchError(f"timed out{after}; the site is slow or down, try again later") from None
    except httpcore.ConnectError as error:
        raise FetchError(f"cannot connect ({_short(error)}); check the URL or try again later") from None
    except (httpcore.NetworkError, httpcore.ProtocolError) as error:
        raise FetchError(f"the connection failed ({_short(error)}); try again later") from None


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:160] or type(error).__name__


def _charset(parameters: str) -> str | None:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return None


def _status_reason(status: int, phrase: str) -> str:
    if status == 404:
        return "not found (HTTP 404); check the URL"
    if status == 410:
        return "gone (HTTP 410): the page was removed"
    if status in (401, 403):
        return f"access denied (HTTP {status}); citebot fetches only public pages"
    if status == 429:
        return "rate limited by the site (HTTP 429); try again later"
    if status >= 500:
        return f"the site failed (HTTP {status} {phrase}); try again later".replace("  ", " ")
    return f"unexpected response HTTP {status} {phrase}".strip()


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    more = "over " if at_least else ""
    return (
        f"too large ({more}{size / 1e6:.1f} MB, the limit is {limit / 1e6:.1f} MB); raise CITEBOT_FETCH_MAX_BYTES "
        "if it is really a page"
    )
