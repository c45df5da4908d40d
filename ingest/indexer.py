"""The ingestion plan: what a run must add, re-point and remove, computed from the index and what was scanned.

Documents are keyed by the hash of their text. A source (a path, or a page's URL) maps to at most one document;
a document may have several sources (the same text under two paths is stored once). The plan is a pure function
of what is indexed and what was scanned, so `--dry-run` shows exactly what a real run would do.

A source missing from the scan is removed only when the run covers it (`in_scope`): a file under an ingested
folder, or a page a feed no longer lists when the run prunes. Sources known to be unchanged without being read
(a page that answered 304, a feed entry whose version did not change) count as unchanged and keep their
document; their fetch state is refreshed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.types import DocumentRecord, WebSource
from ingest.fetch import is_url
from ingest.loaders import Document


@dataclass(frozen=True)
class Problem:
    source: str
    reason: str


@dataclass(frozen=True)
class Scanned:
    """A source that loaded: its document, the hash that keys it, and for a web page how it was fetched."""

    document: Document
    doc_id: str
    web: WebSource | None = None


@dataclass
class Plan:
    added: list[str] = field(default_factory=list)  # sources new to the index
    changed: list[str] = field(default_factory=list)  # sources whose text changed
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # sources gone from an ingested folder
    new_documents: dict[str, Document] = field(default_factory=dict)  # doc_id -> document to embed and write
    new_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # doc_id -> sources of new documents
    new_web: dict[str, dict[str, WebSource]] = field(default_factory=dict)  # doc_id -> fetch state of web sources
    updates: list[DocumentRecord] = field(default_factory=list)  # existing records whose sources or state change
    deletions: list[str] = field(default_factory=list)  # doc_ids left without any source


def in_scope(source: str, roots: Iterable[Path]) -> bool:
    """Whether the file `source` lies under one of the ingested paths (so its absence means it was deleted)."""
    if is_url(source):
        return False
    path = Path(os.path.abspath(source))
    for root in roots:
        root = Path(os.path.abspath(root))
        if path == root or root in path.parents:
            return True
    return False


def make_plan(
    existing: Mapping[str, DocumentRecord],
    scanned: Mapping[str, Scanned],
    covers: Callable[[str], bool],
    kept: set[str],
    unchanged: Mapping[str, WebSource] | None = None,
) -> Plan:
    """`scanned` maps source -> what loaded; `covers(source)` says whether a source missing from the scan is gone;
    `kept` are sources that failed to load and keep their old version; `unchanged` are web sources known unchanged
    without loading them, with their refreshed fetch state."""
    unchanged = unchanged or {}
    plan = Plan()
    indexed = {source: record.doc_id for record in existing.values() for source in record.sources}
    for source, item in sorted(scanned.items()):
        previous = indexed.get(source)
        if previous is None:
            plan.added.append(source)
        elif previous == item.doc_id:
            plan.unchanged.append(source)
        else:
            plan.changed.append(source)
        if item.doc_id not in existing:
            plan.new_documents.setdefault(item.doc_id, item.document)
            plan.new_sources[item.doc_id] = (*plan.new_sources.get(item.doc_id, ()), source)
            if item.web is not None:
                plan.new_web.setdefault(item.doc_id, {})[source] = item.web
    plan.unchanged.extend(sorted(source for source in unchanged if source in indexed and source not in scanned))
    plan.removed = sorted(
        source
        for source in indexed
        if source not in scanned and source not in kept and source not in unchanged and covers(source)
    )
    wanted: dict[str, set[str]] = {}
    for source, item in scanned.items():
        wanted.setdefault(item.doc_id, set()).add(source)
    for doc_id, record in existing.items():
        sources = {
            source
            for source in record.sources
            if (source in kept or source in unchanged or not covers(source)) and source not in scanned
        } | wanted.get(doc_id, set())
        web = {source: state for source, state in record.web.items() if source in sources}
        web.update({source: state for source, state in unchanged.items() if source in sources})
        web.update({source: item.web for source, item in scanned.items() if source in sources and item.web})
        if not sources:
            plan.deletions.append(doc_id)
        elif sources != set(record.sources) or web != record.web:
            # The sources it had keep their order (the first ingested is the one citations name), new ones follow.
            ordered = (
                *(source for source in record.sources if source in sources),
                *sorted(sources - set(record.sources)),
            )
            plan.updates.append(replace(record, sources=ordered, web=web, ready=True))
    return plan
