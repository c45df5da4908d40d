"""The ingestion plan: what a run must add, re-point and remove, computed from the index and the files on disk.

Documents are keyed by the hash of their text. A source path maps to at most one document; a document may
have several sources (the same text under two paths is stored once). The plan is a pure function of what is
indexed and what was scanned, so `--dry-run` shows exactly what a real run would do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.types import DocumentRecord
from ingest.loaders import Document


@dataclass(frozen=True)
class Scanned:
    """A file that loaded: its document and the hash that keys it."""

    document: Document
    doc_id: str


@dataclass
class Plan:
    added: list[str] = field(default_factory=list)  # sources new to the index
    changed: list[str] = field(default_factory=list)  # sources whose text changed
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # sources gone from an ingested folder
    new_documents: dict[str, Document] = field(default_factory=dict)  # doc_id -> document to embed and write
    new_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # doc_id -> sources of new documents
    updates: list[DocumentRecord] = field(default_factory=list)  # existing records whose sources change
    deletions: list[str] = field(default_factory=list)  # doc_ids left without any source


def in_scope(source: str, roots: Iterable[Path]) -> bool:
    """Whether `source` lies under one of the ingested paths (so its absence means it was deleted)."""
    path = Path(os.path.abspath(source))
    for root in roots:
        root = Path(os.path.abspath(root))
        if path == root or root in path.parents:
            return True
    return False


def make_plan(
    existing: Mapping[str, DocumentRecord],
    scanned: Mapping[str, Scanned],
    roots: list[Path],
    kept: set[str],
) -> Plan:
    """`scanned` maps source -> loaded file; `kept` are sources that failed to load and keep their old version."""
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
    plan.removed = sorted(
        source for source in indexed if source not in scanned and source not in kept and in_scope(source, roots)
    )
    wanted: dict[str, set[str]] = {}
    for source, item in scanned.items():
        wanted.setdefault(item.doc_id, set()).add(source)
    for doc_id, record in existing.items():
        sources = {
            source
            for source in record.sources
            if (source in kept or not in_scope(source, roots)) and source not in scanned
        } | wanted.get(doc_id, set())
        if not sources:
            plan.deletions.append(doc_id)
        elif sources != set(record.sources):
            plan.updates.append(replace(record, sources=tuple(sorted(sources)), ready=True))
    return plan
