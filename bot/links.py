"""Links to quoted passages on the web: the source URL with a text fragment (`#:~:text=`).

Browsers that support text fragments (Chrome, Edge, Safari, Firefox 131+) scroll to the quoted sentence and
highlight it; others simply open the page. Long quotes are linked by their first and last words
(`textStart,textEnd`), which is how the syntax names a range. See https://wicg.github.io/scroll-to-text-fragment/.
"""

from __future__ import annotations

from urllib.parse import quote as percent_encode

# Words of a long quote used for each end of the fragment's range.
EDGE_WORDS = 5


def text_fragment_link(url: str, quote: str) -> str:
    """`url` with a text fragment that highlights `quote`; `url` unchanged when the quote has no words."""
    words = [word for word in quote.split() if word.strip("#*>-")]
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
    return percent_encode(text, safe="").replace("-", "%2D")
