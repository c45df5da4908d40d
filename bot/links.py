"""Where a cited passage opens in the operator console: shared by the engine (the `link` of every citation, so
Discord, `citebot ask` and the REPL all show the same address) and by the console's own pages."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

from bot.types import Answer, Citation


def passage_path(doc_id: str, start: int, end: int) -> str:
    """The console path of a passage: the document with `text[start:end]` highlighted and scrolled to (`#q`)."""
    return f"/doc/{quote(doc_id, safe='')}?start={start}&end={end}#q"


def citation_link(citation: Citation, public_url: str) -> str | None:
    """The absolute link of a citation, or None when it names no document."""
    if not citation.doc_id:
        return None
    return public_url.rstrip("/") + passage_path(citation.doc_id, citation.start, citation.end)


def link_citations(answer: Answer, public_url: str | None) -> Answer:
    """The answer with every citation's `link` set (when `CITEBOT_PUBLIC_URL` is set; else unchanged)."""
    if not public_url or not answer.citations:
        return answer
    citations = tuple(replace(c, link=citation_link(c, public_url)) for c in answer.citations)
    return replace(answer, citations=citations)
