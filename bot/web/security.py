"""Who may use the console, and the defences every page relies on.

The console shows what members asked, so:
- With `CITEBOT_WEB_TOKEN` set, every page but `/login` needs a session: a GET without one is redirected to the
  login page, anything else answers 401. Logging in with the token sets a session cookie that is signed (HMAC with
  a key made when the console starts), HttpOnly, SameSite=Strict, Secure when the console is served over https,
  and valid for `SESSION_SECONDS`. The console also remembers the sessions it opened, so logging out ends a session
  for good (a copied cookie is refused) and a restart ends them all.
- Without a token the console may only bind loopback (`check_bind`), and then it is open to this machine's users,
  like the REPL: no login. A site the operator visits could still reach 127.0.0.1 through DNS rebinding, so in that
  mode a request whose Host is not a loopback name is refused.
- Every POST carries a CSRF token tied to the session (a hidden form field, compared in constant time), and a
  browser's Origin must be this console. `POST /login` needs no CSRF token: there is no session yet, and the token
  it carries is itself the secret; it is Origin-checked like the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.config import Settings
from bot.errors import ConfigError

SESSION_COOKIE = "citebot_session"
SESSION_SECONDS = 7 * 24 * 3600
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether a bind address (or a Host header's name) only reaches this machine."""
    name = host.strip().lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Settings) -> None:
    """Refuse to serve beyond loopback without a login token (ConfigError names the fix)."""
    if not is_loopback(host) and not web_token(settings):
        raise ConfigError(
            f"refusing to serve the console on {host} without a login: set CITEBOT_WEB_TOKEN to a long random "
            "secret (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or bind 127.0.0.1"
        )


def web_token(settings: Settings) -> str:
    return settings.web_token.get_secret_value().strip() if settings.web_token else ""


@dataclass(frozen=True)
class Session:
    sid: str
    issued: int

    @property
    def value(self) -> str:
        return f"{self.sid}.{self.issued}"


class Guard:
    """Sessions, CSRF tokens and the Host/Origin checks for one running console."""

    def __init__(self, token: str, public_url: str | None = None) -> None:
        self.token = token
        self.secure_cookies = (public_url or "").startswith("https://")
        # Behind a reverse proxy the Host header may name the backend; the public address is this console too.
        self._public_host = urlsplit(public_url).netloc.lower() if public_url else None
        self._key = secrets.token_bytes(32)
        self._sessions: set[str] = set()  # the logged-in sessions (an open console needs none)
        self._names: dict[str, str] = {}  # session id -> the name its operator gave at login

    @classmethod
    def for_settings(cls, settings: Settings) -> Guard:
        return cls(web_token(settings), settings.public_url)

    @property
    def login_required(self) -> bool:
        return bool(self.token)

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self, name: str = "") -> tuple[Session, str]:
        """A fresh session and its cookie value; `name` is who logged in (shown with the labels they set)."""
        session = Session(secrets.token_urlsafe(18), int(time.time()))
        if self.login_required:
            self._sessions.add(session.sid)
        if name:
            self._names[session.sid] = name
        return session, f"{session.value}.{self._sign(session.value)}"

    def name_of(self, session: Session | None) -> str:
        """Who uses a session: the name given at login, else "operator"."""
        return self._names.get(session.sid, "operator") if session is not None else "operator"

    def session(self, cookie: str | None) -> Session | None:
        """The session a cookie proves, or None (missing, forged, expired or logged out)."""
        if not cookie or cookie.count(".") != 2:
            return None
        sid, issued, signature = cookie.split(".")
        if not issued.isdigit() or not hmac.compare_digest(signature, self._sign(f"{sid}.{issued}")):
            return None
        if time.time() - int(issued) > SESSION_SECONDS:
            self._sessions.discard(sid)
            return None
        if self.login_required and sid not in self._sessions:
            return None
        return Session(sid, int(issued))

    def end(self, session: Session) -> None:
        self._sessions.discard(session.sid)
        self._names.pop(session.sid, None)

    def check_token(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf:{session.sid}")

    def check_csrf(self, session: Session | None, given: str) -> bool:
        return session is not None and hmac.compare_digest(given.encode(), self.csrf_token(session).encode())

    def host_allowed(self, host_header: str) -> bool:
        """Open (tokenless) consoles answer only to loopback names (against DNS rebinding)."""
        if self.login_required:
            return True
        return is_loopback(_hostname(host_header))

    def same_origin(self, origin: str | None, host_header: str) -> bool:
        """A browser's POST must come from a page of this console (as reached directly or at CITEBOT_PUBLIC_URL);
        clients that send no Origin pass."""
        if not origin:
            return True
        return urlsplit(origin).netloc.lower() in (host_header.lower(), self._public_host)


def _hostname(host_header: str) -> str:
    """The name part of a Host header: `127.0.0.1:8080` -> `127.0.0.1`, `[::1]:80` -> `[::1]`."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
