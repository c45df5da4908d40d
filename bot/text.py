"""Text spans shared by the splitter and the extractive answerer: sentences and headings, as offsets.

Everything here returns (start, end) offsets into the original string and never rewrites it, which is what
keeps citations verbatim: `text[start:end]` is always the quoted passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Abbreviations after which a period does not end a sentence ("U.S. side", "Mr. Bessent", "Jan. 5").
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "inc", "ltd", "co", "corp", "no",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "gen", "gov", "sen",
    "rep", "rev", "col", "lt", "sgt", "capt", "cmdr", "adm", "fig", "approx", "dept", "est", "e.g", "i.e",
    "a.m", "p.m", "u.s", "u.k", "u.n", "e.u",
}  # fmt: skip

# A candidate end: terminal punctuation, optional closing quotes/brackets, then whitespace.
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_NEXT_STARTS_SENTENCE = re.compile(r"\s+[\"'“‘(\[]*[A-Z0-9#•\-–—*]")
_LINE_BREAK = re.compile(r"\n")
# A trailing source attribution, "... a promise to keep talking. (scmp.com) The bottom line ...": it ends the
# sentence before it and is no sentence of its own.
_ATTRIBUTION = re.compile(r"\(\s*(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\s*\)", re.IGNORECASE)
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


def _is_abbreviation(text: str, dot: int) -> bool:
    match = _WORD_BEFORE.search(text, max(0, dot - 12), dot)
    if not match:
        return False
    word = match.group(1).lower().rstrip(".")
    # Single letters are initials ("J. Smith", the "S" of "U.S.").
    return word in _ABBREVIATIONS or len(word) == 1


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentences of `text[start:end]` as stripped spans; line breaks always end a sentence, and a source
    attribution such as "(scmp.com)" ends one and is a span of its own (see `is_attribution`)."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for line_start, line_end in _lines(text, start, end):
        for piece_start, piece_end in _without_attributions(text, line_start, line_end):
            cursor = piece_start
            for match in _END.finditer(text, piece_start, piece_end):
                if text[match.start()] == "." and _is_abbreviation(text, match.start()):
                    continue
                if not _NEXT_STARTS_SENTENCE.match(text, match.end(), piece_end):
                    continue
                _append_stripped(text, cursor, match.end(), spans)
                cursor = match.end()
            _append_stripped(text, cursor, piece_end, spans)
    return spans


def _without_attributions(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """`text[start:end]` cut before and after each source attribution."""
    pieces = []
    cursor = start
    for match in _ATTRIBUTION.finditer(text, start, end):
        pieces += [(cursor, match.start()), (match.start(), match.end())]
        cursor = match.end()
    pieces.append((cursor, end))
    return pieces


def is_attribution(sentence: str) -> bool:
    """A span that only names a source, like "(usnews.com)": it labels the sentence before it, says nothing."""
    return bool(_ATTRIBUTION.fullmatch(sentence.strip()))


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    lines = []
    cursor = start
    for match in _LINE_BREAK.finditer(text, start, end):
        lines.append((cursor, match.start()))
        cursor = match.end()
    lines.append((cursor, end))
    return lines


def _append_stripped(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end and any(ch.isalnum() for ch in text[start:end]):
        spans.append((start, end))


@dataclass(frozen=True, slots=True)
class Section:
    """A stretch of text under one heading: `heading` is the heading path ("A > B"), `start:end` its body."""

    heading: str
    start: int
    end: int


_LINE_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
# "### Why Seoul, not Beijing or Washington? Because ..." inside a paragraph: the heading runs to its "?", ".",
# "!" or ":" (or to the end of the line).
_INLINE_HEADING = re.compile(r"(?<=\s)(#{1,6})[ \t]+([^\n#]+?[?.!:])(?=\s)")


def _plain_heading(line: str, following: str) -> bool:
    """A short line without end punctuation followed by prose reads as a heading in plain text."""
    words = line.split()
    return (
        0 < len(words) <= 10
        and len(line) <= 80
        and line[-1] not in ".,;:!?\"'”’)"
        and not line.startswith(("-", "*", "•", "✓"))
        and len(following.split()) > len(words)
    )


def is_heading_line(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]` is a whole line that reads as a heading (a short line without end punctuation
    followed by longer prose: "Key Facts", "The Davos Dialogue"), wherever it stands, the first line included."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    line = text[line_start:line_end].strip()
    if line != text[start:end].strip():
        return False
    following = next((candidate for candidate in text[line_end:].split("\n") if candidate.strip()), "")
    return _plain_heading(line, following.strip())


def sections(text: str, plain_headings: bool = True) -> list[Section]:
    """Split a document at its headings (Markdown, inline `### `, and short title-like lines)."""
    marks: list[tuple[int, int, str]] = []  # (offset, level, heading text)
    for match in _LINE_HEADING.finditer(text):
        marks.append((match.start(), len(match.group(1)), match.group(2).strip()))
    for match in _INLINE_HEADING.finditer(text):
        marks.append((match.start(), len(match.group(1)), match.group(2).strip()))
    if plain_headings:
        offset = 0
        lines = text.split("\n")
        for index, line in enumerate(lines):
            stripped = line.strip()
            following = next((candidate for candidate in lines[index + 1 :] if candidate.strip()), "")
            if index > 0 and stripped and not stripped.startswith("#") and _plain_heading(stripped, following):
                marks.append((offset + line.index(stripped), 2, stripped))
            offset += len(line) + 1
    marks.sort()
    result: list[Section] = []
    path: list[tuple[int, str]] = []
    cursor = 0
    heading = ""
    for offset, level, title in marks:
        if offset > cursor:
            result.append(Section(heading, cursor, offset))
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        heading = " > ".join(name for _, name in path)
        cursor = offset
    result.append(Section(heading, cursor, len(text)))
    return [section for section in result if text[section.start : section.end].strip()]
