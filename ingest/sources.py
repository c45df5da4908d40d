"""The source list (`sources.toml`): what `citebot watch` keeps ingested, and how often.

    [[source]]
    folder = "corpus"            # re-ingested whenever a file in it changes

    [[source]]
    feed = "https://example.com/news/rss.xml"
    every = "15m"                # optional schedule: 30s, 15m, 6h, 1d, 1h30m
    prune = true                 # optional: drop pages the feed no longer lists (default: keep them)

    [[source]]
    url = "https://example.com/about"

    [[source]]
    sitemap = "https://example.com/sitemap.xml"
    every = "6h"

Each `[[source]]` names exactly one of `folder`, `url`, `feed` or `sitemap` (a URL is read as whatever it turns
out to be; the key only sets the default schedule). Folder paths are relative to the file's own folder.
Every mistake is a `SourcesError` naming the source and what to write instead.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.errors import BlockedURL, SourcesError
from ingest.fetch import check_url
from ingest.loaders import display_path

Kind = Literal["folder", "url", "feed", "sitemap"]
KINDS: tuple[Kind, ...] = ("folder", "url", "feed", "sitemap")
# How often each kind is fetched when the file gives no schedule (folders: only when they change).
DEFAULT_EVERY: dict[Kind, float | None] = {"folder": None, "url": 24 * 3600.0, "feed": 30 * 60.0, "sitemap": 6 * 3600.0}
_KEYS = {*KINDS, "every", "prune"}
_INTERVAL = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)", re.I)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Source:
    """One entry of the source list: `target` is a folder path or a URL; `every` is seconds between runs."""

    kind: Kind
    target: str
    every: float | None
    prune: bool = False

    def __str__(self) -> str:
        return self.target


def parse_interval(text: str) -> float:
    """Seconds in "30s", "15m", "6h", "1d" or "1h30m"; raises ValueError for anything else."""
    compact = text.replace(" ", "").lower()
    parts = _INTERVAL.findall(compact)
    if not parts or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError(text)
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds < 1:
        raise ValueError(text)
    return seconds


def load_sources(path: Path) -> list[Source]:
    if not path.is_file():
        raise SourcesError(f"no source list at {path}; create it (see README, section Sources) or set CITEBOT_SOURCES")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SourcesError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(f"{path} is not valid TOML ({exc}); fix that line") from None
    unknown = sorted(set(data) - {"source"})
    if unknown:
        raise SourcesError(f"{path}: unknown table {unknown[0]!r}; list sources as [[source]] entries")
    entries = data.get("source", [])
    if not isinstance(entries, list) or not entries:
        raise SourcesError(f"{path} lists no sources; add [[source]] entries with folder, url, feed or sitemap")
    return [_source(entry, number, path) for number, entry in enumerate(entries, start=1)]


def _source(entry: object, number: int, path: Path) -> Source:
    where = f"{path}: source {number}"
    if not isinstance(entry, dict):
        raise SourcesError(f"{where} is not a table; write it as [[source]] with key = value lines")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise SourcesError(f"{where} has an unknown key {unknown[0]!r}; use folder, url, feed or sitemap, every, prune")
    kinds = [kind for kind in KINDS if kind in entry]
    if len(kinds) != 1:
        raise SourcesError(f"{where} must name exactly one of folder, url, feed or sitemap")
    kind = kinds[0]
    value = entry[kind]
    if not isinstance(value, str) or not value.strip():
        raise SourcesError(f"{where}: {kind} must be a non-empty string")
    every = DEFAULT_EVERY[kind]
    if "every" in entry:
        try:
            every = parse_interval(str(entry["every"]))
        except ValueError:
            raise SourcesError(
                f"{where}: every = {entry['every']!r} is not a schedule; write e.g. 30s, 15m, 6h or 1d"
            ) from None
    prune = entry.get("prune", False)
    if not isinstance(prune, bool):
        raise SourcesError(f"{where}: prune must be true or false")
    if kind == "folder":
        folder = Path(value).expanduser()
        target = display_path(folder if folder.is_absolute() else path.parent / folder)
    else:
        try:
            target = check_url(value)
        except BlockedURL as exc:
            raise SourcesError(f"{where}: {exc}") from None
    return Source(kind, target, every, prune)
