"""Links to cited passages, shared by every adapter.

- In the operator console: the engine sets the `link` of every citation (so Discord, `citebot ask` and the REPL
  all show the same address), and the console's own pages use the same paths.
- On the web: a web page's citation links to the source URL with a text fragment (`#:~:text=`). Browsers that
  support text fragments (Chrome, Edge, Safari, Firefox 131+) scroll to the quoted sentence and highlight it;
  others simply open the page. Long quotes are linked by their first and last words (`textStart,textEnd`), which
  is how the syntax names a range (https://wicg.github.io/scroll-to-text-fragment/).
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

from bot.types import Answer, Citation

# Words of a long quote used for each end of a text fragment's range.
EDGE_WORDS = 5


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


def text_fragment_link(url: str, passage: str) -> str:
    """`url` with a text fragment that highlights `passage`; `url` unchanged when the passage has no words."""
    words = [word for word in passage.split() if word.strip("#*>-")]
    if not words:
        return url
    if len(words) <= 2 * EDGE_WORDS:
        directive = _encode(" ".join(words))
    else:
        directive = f"{_encode(' '.join(words[:EDGE_WORDS]))},{_encode(' '.join(words[-EDGE_WORDS:]))}"
    # An existing fragment stays: the directive follows it after ":~:".
    return f"{url}:~:text={directive}" if "#" in url else f"{url}#:~:text={directive}"


def _encode(text: str) -> str:
    """Percent-encoding for a text directive: "-", "," and "&" are syntax there, so they are encoded too."""
    return quote(text, safe="").replace("-", "%2D")
