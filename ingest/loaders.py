"""Loaders: a path becomes a `Document` whose `text` is what citations quote from.

For .txt and .md the text is the file decoded as UTF-8 (Latin-1 when that fails), unchanged, so a citation's
offsets point into the file itself. For HTML it is the main text (scripts, navigation and markup dropped); for
PDF it is the pages' text joined by blank lines, with each page's span kept so chunks know their page.
A publication date comes from front matter (`date:` or `published:`) in .txt/.md, and from the usual meta tags
(`article:published_time`, `datePublished`, `<time datetime>`) in HTML; otherwise it is unknown.
Every failure raises `IngestError` (or `UnsupportedFile`) with a one-line reason. Web pages are loaded by
`ingest.web` into the same `Document`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.dates import normalize
from bot.errors import EmptyFile, IngestError, UnsupportedFile

MAX_FILE_BYTES = 20 * 1024 * 1024
TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES


@dataclass(frozen=True)
class Document:
    """A loaded document: `pages` are (start, end, page) spans of `text` that chunks must not cross.

    `published` is the publication date in ISO 8601 when known; `url`, `author` and `origin` (file, url, feed,
    sitemap) describe where it came from, and end up on its `DocumentRecord`.
    """

    text: str
    source: str
    title: str
    pages: tuple[tuple[int, int, int], ...] = field(default=())
    published: str | None = None
    url: str | None = None
    author: str | None = None
    origin: str = "file"


def display_path(path: Path) -> str:
    """The path as citations show it: relative to the working directory when it lies inside it."""
    absolute = Path(os.path.abspath(path))  # abspath also folds "..", so one file has one name
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()


def walk(root: Path) -> Iterator[Path]:
    """Files under `root` (or `root` itself), sorted, skipping hidden files and folders."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            yield path


def read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IngestError(f"cannot read: {exc.strerror or exc}") from None
    if size > MAX_FILE_BYTES:
        raise IngestError(
            f"too large ({size / 1e6:.0f} MB, the limit is {MAX_FILE_BYTES / 1e6:.0f} MB); split it into smaller files"
        )
    try:
        return path.read_bytes()
    except PermissionError:
        raise IngestError("permission denied; make the file readable (chmod +r) and run again") from None
    except OSError as exc:
        raise IngestError(f"cannot read: {exc.strerror or exc}") from None


def decode(data: bytes) -> str:
    """UTF-8 (with or without a byte-order mark), else Latin-1, which decodes any byte sequence."""
    if b"\x00" in data[:8192]:
        raise IngestError("looks like a binary file (it contains NUL bytes); only text, HTML and PDF are read")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def load(path: Path) -> Document:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        kind = suffix or "files without an extension"
        raise UnsupportedFile(f"unsupported file type {kind}; citebot reads .txt, .md, .html and .pdf")
    data = read_bytes(path)
    if not data.strip():
        raise EmptyFile("empty file; add text or remove it")
    source = display_path(path)
    if suffix in PDF_SUFFIXES:
        return _load_pdf(data, source, path)
    text = decode(data)
    if suffix in HTML_SUFFIXES:
        return _load_html(text, source, path)
    if not text.strip():
        raise EmptyFile("no text in the file; add text or remove it")
    return Document(
        text=text,
        source=source,
        title=text_title(text, path, markdown=suffix != ".txt"),
        published=front_matter_date(text),
    )


FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_TITLE_LINE = re.compile(r"^title:\s*[\"']?(.+?)[\"']?\s*$", re.MULTILINE)
_DATE_LINE = re.compile(r"^(?:date|published):\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)


def front_matter_date(text: str) -> str | None:
    """The `date:` (or `published:`) of the front matter, in ISO 8601; None without one or when unreadable."""
    front_matter = FRONT_MATTER.match(text)
    line = _DATE_LINE.search(front_matter.group(1)) if front_matter else None
    return normalize(line.group(1)) if line else None


_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def text_title(text: str, path: Path, markdown: bool = True) -> str:
    """Front matter `title:`, else the first Markdown heading, else a short first line, else the file name."""
    front_matter = FRONT_MATTER.match(text)
    title = _TITLE_LINE.search(front_matter.group(1)) if front_matter else None
    if title:
        return title.group(1).strip()
    if markdown:
        heading = _MARKDOWN_HEADING.search(text[:4000])
        if heading:
            return heading.group(1).strip()
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            # A headline has a few words and no closing punctuation; "Key Facts" is a section label, not a title.
            if len(line) <= 120 and len(line.split()) >= 3 and not line.endswith((".", ",", ";", ":")):
                return line
            break
    return title_from_file_name(path, text)


def title_from_file_name(path: Path, text: str) -> str:
    """The file name as a title, each word cased as the document itself writes it.

    `bessent-meets-he-lifeng-in-davos.txt` over a text that says "Bessent met He Lifeng ... in Davos" becomes
    "Bessent meets He Lifeng in Davos". Runs of words are matched first ("he lifeng" -> "He Lifeng", where the
    pronoun "he" alone would stay lower case), and a word at the start of a sentence says nothing about its case.
    """
    words = path.stem.replace("-", " ").replace("_", " ").split()
    if not words:
        return path.name
    text = text[:_CASING_SAMPLE_CHARS]
    cased: list[str | None] = [None] * len(words)
    for length in range(len(words), 0, -1):
        for first in range(len(words) - length + 1):
            if any(cased[first : first + length]):
                continue
            votes = _casings(text, words[first : first + length])
            if votes is not None:
                cased[first : first + length] = votes
    title = " ".join(word if found is None else found for word, found in zip(words, cased, strict=True))
    return title[:1].upper() + title[1:]


_CASING_SAMPLE_CHARS = 200_000  # enough text to see how names are written, bounded for very large files


def _casings(text: str, words: list[str]) -> list[str | None] | None:
    """How the text most often writes this run of words (mid-sentence only), or None if it never does."""
    pattern = re.compile(r"\b" + r"\s+".join(re.escape(word) for word in words) + r"\b", re.IGNORECASE)
    counts: list[dict[str, int]] = [{} for _ in words]
    found = False
    for match in pattern.finditer(text):
        found = True
        before = text[: match.start()].rstrip(" \t\"'“‘(")
        sentence_start = not before or before[-1] in ".!?:\n-•*"
        for index, word in enumerate(match.group(0).split()):
            if index == 0 and sentence_start:
                continue  # "He said..." does not tell how "he" is written elsewhere
            counts[index][word] = counts[index].get(word, 0) + 1
    if not found:
        return None
    return [max(count, key=lambda word: (count[word], word.islower())) if count else None for count in counts]


def _load_html(markup: str, source: str, path: Path) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "html.parser")
    published = _html_date(soup)
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "aside", "form", "template"]):
        tag.decompose()
    title_tag = soup.find("title")
    heading = soup.find(["h1", "h2"])
    root = soup.find("main") or soup.find("article") or soup.body or soup
    blocks = []
    for element in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td"]):
        if element.find(["p", "li", "pre", "blockquote", "td"]):
            continue  # its text is taken from the inner blocks
        words = " ".join(element.get_text(" ").split())
        if not words:
            continue
        if element.name and element.name[0] == "h" and element.name[1:].isdigit():
            words = "#" * int(element.name[1:]) + " " + words
        blocks.append(words)
    if not blocks:
        blocks = [" ".join(root.get_text(" ").split())]
    text = "\n\n".join(block for block in blocks if block)
    if not text.strip():
        raise IngestError("no readable text in this HTML page")
    title = (
        (" ".join(title_tag.get_text().split()) if title_tag and title_tag.get_text().strip() else "")
        or (" ".join(heading.get_text().split()) if heading else "")
        or text_title(text, path)
    )
    return Document(text=text, source=source, title=title, published=published)


# Where pages put their publication date, most specific first.
_DATE_META = ("article:published_time", "og:published_time", "datepublished", "publishdate", "pubdate", "date")


def _html_date(soup: Any) -> str | None:
    metas = {
        str(meta.get("property") or meta.get("name") or meta.get("itemprop") or "").lower(): meta.get("content")
        for meta in soup.find_all("meta")
    }
    for name in _DATE_META:
        if metas.get(name) and (found := normalize(str(metas[name]))):
            return found
    time_tag = soup.find("time", attrs={"datetime": True})
    return normalize(str(time_tag["datetime"])) if time_tag is not None else None


def _load_pdf(data: bytes, source: str, path: Path) -> Document:
    import io
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns about every odd object; we report once
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise IngestError("the PDF is encrypted; decrypt it first (e.g. qpdf --decrypt)")
        page_texts = [(page.extract_text() or "").strip() for page in reader.pages]
    except IngestError:
        raise
    except Exception as exc:  # pypdf raises many types for broken files
        raise IngestError(f"corrupt or unreadable PDF ({type(exc).__name__}); re-export it and try again") from None
    pieces: list[str] = []
    pages: list[tuple[int, int, int]] = []
    offset = 0
    for number, page_text in enumerate(page_texts, start=1):
        if not page_text:
            continue
        if pieces:
            pieces.append("\n\n")
            offset += 2
        pieces.append(page_text)
        pages.append((offset, offset + len(page_text), number))
        offset += len(page_text)
    text = "".join(pieces)
    if not text.strip():
        raise IngestError("the PDF has no extractable text (scanned images?); run OCR on it first")
    try:
        metadata_title = str(reader.metadata.title or "").strip() if reader.metadata else ""
    except Exception:  # a malformed info dictionary only costs us the title
        metadata_title = ""
    return Document(text=text, source=source, title=metadata_title or text_title(text, path), pages=tuple(pages))
