"""The splitter's contract, checked on the seed corpus, a pathological sentence and a PDF, with two token counters.

Every chunk quotes the document exactly, fits the model together with its embedding header, stays inside one
section (heading) and one PDF page, and nothing with letters in it falls between chunks. The `model` variants
count with the real all-MiniLM-L6-v2 tokenizer, which is what decides whether the model truncates a chunk.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from bot.answering.citations import quotable_sentences
from bot.embeddings import HashingEmbedder, SentenceTransformerEmbedder
from bot.text import sentence_spans
from bot.types import Chunk
from ingest.loaders import Document, load
from ingest.splitter import Splitter, content_hash, embedding_text
from tests.conftest import SEED_CORPUS
from tests.fixtures_pdf import write_pdf

MODEL_MAX_TOKENS = 256  # all-MiniLM-L6-v2 reads this many word pieces, then silently stops
SEOUL = SEED_CORPUS / "china-sends-he-lifeng-to-seoul.txt"
DAVOS = SEED_CORPUS / "bessent-meets-he-lifeng-in-davos.txt"
DAVOS_HEADINGS = [
    "Quick Summary",
    "The Davos Dialogue",
    "A Pattern of Engagement",
    "Progress on Key Commodities",
    "The Broader Context",
    "Looking Ahead",
]
WORDS = "harbour tide ledger orchard granite signal copper lantern meadow quarry ferry beacon canal willow".split()

TokenCounter = Callable[[list[str]], list[int]]


@dataclass(frozen=True)
class Counting:
    """A splitter and the counter that judges its chunks (the same one the pipeline would give it)."""

    name: str
    splitter: Splitter
    count_tokens: TokenCounter


@pytest.fixture(scope="module")
def real_model() -> SentenceTransformerEmbedder:
    """The bundled all-MiniLM-L6-v2, loaded once for the module."""
    model = SentenceTransformerEmbedder()
    assert model.max_tokens == MODEL_MAX_TOKENS
    return model


@pytest.fixture(params=["hashing", pytest.param("model", marks=pytest.mark.model)])
def counting(request: pytest.FixtureRequest) -> Counting:
    embedder: HashingEmbedder | SentenceTransformerEmbedder
    embedder = HashingEmbedder() if request.param == "hashing" else request.getfixturevalue("real_model")
    splitter = Splitter(embedder.count_tokens, max_tokens=embedder.max_tokens)  # as IngestPipeline builds it
    return Counting(request.param, splitter, embedder.count_tokens)


# -- documents -----------------------------------------------------------------------------------------------


GIANT_TITLE = (
    "Minutes of the harbour board meeting on the ferry budget, the tide tables, the canal locks, the granary "
    "accounts and the lantern repairs for the winter season"
)


def giant_sentence_document() -> Document:
    """One sentence of 2,000 words: no punctuation and no line break anywhere to cut at.

    The long title goes into every chunk's embedding header, so a splitter that forgets the header overflows.
    Some words are separated by two spaces or a tab, which must not end up at the edge of a chunk.
    """
    separators = ["  " if i % 50 == 49 else "\t" if i % 77 == 76 else " " for i in range(2000)]
    words = [f"{WORDS[i % len(WORDS)]}{i}" if i % 97 == 0 else WORDS[i % len(WORDS)] for i in range(2000)]
    text = "".join(word + separator for word, separator in zip(words, separators, strict=True))
    return Document(text=text.rstrip() + "\n", source="giant.txt", title=GIANT_TITLE)


PDF_PAGES: list[list[str]] = [
    [
        f"Page {page} line {line}: the harbour board reviewed the {WORDS[line % 14]} accounts and the "
        f"{WORDS[(line + page) % 14]} budget for the coming season."
        for line in range(36)
    ]
    if page != 2
    else []  # a blank page: page numbers after it must not shift
    for page in (1, 2, 3, 4)
]


@pytest.fixture(scope="module")
def pdf_document(tmp_path_factory: pytest.TempPathFactory) -> Document:
    path = write_pdf(tmp_path_factory.mktemp("pdf") / "harbour.pdf", PDF_PAGES, title="Harbour Board Minutes")
    document = load(path)
    assert [number for _, _, number in document.pages] == [1, 3, 4]
    return document


# -- the contract ----------------------------------------------------------------------------------------------


def assert_chunk_contract(document: Document, chunks: list[Chunk], counting: Counting) -> None:
    text = document.text
    doc_id = content_hash(text)
    assert chunks, "a document with text must give chunks"
    assert [chunk.position for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.id == f"{doc_id}:{chunk.position}"
        assert chunk.doc_id == doc_id
        assert chunk.title == document.title
        assert text[chunk.start : chunk.end] == chunk.text, "a citation must quote the document exactly"
        assert chunk.text and chunk.text == chunk.text.strip()
    # In document order, without overlaps, and nothing with a letter or a digit lost between chunks.
    for before, after in itertools.pairwise(chunks):
        assert before.end <= after.start
    gaps = [text[: chunks[0].start], text[chunks[-1].end :]]
    gaps += [text[before.end : after.start] for before, after in itertools.pairwise(chunks)]
    lost = [gap for gap in gaps if any(character.isalnum() for character in gap)]
    assert not lost, f"text fell between chunks: {lost[:3]}"
    # What the model is given (chunk plus title/heading header, with [CLS]/[SEP]) must fit it.
    counts = counting.count_tokens([embedding_text(chunk) for chunk in chunks])
    too_long = [
        (chunk.position, count) for chunk, count in zip(chunks, counts, strict=True) if count > MODEL_MAX_TOKENS
    ]
    assert not too_long, f"chunks the model would truncate (position, tokens): {too_long}"


def assert_headings(text: str, chunks: list[Chunk], marks: list[tuple[int, str]]) -> None:
    """`marks` are (offset, heading) where sections begin: a chunk sits in one section and carries its heading."""
    for chunk in chunks:
        inside = [heading for offset, heading in marks if chunk.start < offset < chunk.end]
        assert not inside, f"chunk {chunk.position} crosses the heading(s) {inside}"
        expected = next((heading for offset, heading in reversed(marks) if offset <= chunk.start), "")
        assert chunk.heading == expected, f"chunk {chunk.position}: {text[chunk.start : chunk.start + 60]!r}"


def test_seoul_article_chunks(counting: Counting) -> None:
    document = load(SEOUL)
    chunks = counting.splitter.split(document)
    assert_chunk_contract(document, chunks, counting)
    # The article's questions are inline `### ` headings in the middle of one long line.
    marks = [(match.start(), match.group(1)) for match in re.finditer(r"### ([^?]+\?)", document.text)]
    assert len(marks) == 7
    assert_headings(document.text, chunks, marks)
    seoul = [chunk for chunk in chunks if "Because Seoul works as neutral staging ground" in chunk.text]
    assert len(seoul) == 1
    assert seoul[0].heading == "Why Seoul, not Beijing or Washington?"


def test_davos_article_chunks(counting: Counting) -> None:
    document = load(DAVOS)
    chunks = counting.splitter.split(document)
    assert_chunk_contract(document, chunks, counting)
    # Plain-text headings: short title-like lines of their own.
    marks = [(document.text.index(f"\n{heading}\n") + 1, heading) for heading in DAVOS_HEADINGS]
    assert_headings(document.text, chunks, marks)
    soybeans = next(chunk for chunk in chunks if "Soybeans have long been" in chunk.text)
    assert soybeans.heading == "Progress on Key Commodities"


def test_one_enormous_sentence_is_cut_at_word_boundaries(counting: Counting) -> None:
    document = giant_sentence_document()
    chunks = counting.splitter.split(document)
    assert_chunk_contract(document, chunks, counting)
    total = counting.count_tokens([document.text])[0]
    assert len(chunks) >= total / MODEL_MAX_TOKENS
    words = document.text.split()
    assert sum(len(chunk.text.split()) for chunk in chunks) == len(words) == 2000, "no word cut in two"
    for chunk in chunks:
        assert chunk.heading == ""
        assert chunk.start == 0 or document.text[chunk.start - 1].isspace()
        assert document.text[chunk.end].isspace()


@pytest.mark.parametrize("max_tokens", [128, 200])
def test_smaller_model_limits_leave_room_for_the_header(max_tokens: int, pdf_document: Document) -> None:
    """A model that reads fewer word pieces gets smaller chunks: header plus chunk still fit."""
    embedder = HashingEmbedder(max_tokens=max_tokens)
    splitter = Splitter(embedder.count_tokens, max_tokens=embedder.max_tokens)
    for document in (load(SEOUL), load(DAVOS), giant_sentence_document(), pdf_document):
        chunks = splitter.split(document)
        counts = embedder.count_tokens([embedding_text(chunk) for chunk in chunks])
        assert max(counts) <= max_tokens, (document.source, max(counts))
        assert all(document.text[chunk.start : chunk.end] == chunk.text for chunk in chunks)


def test_pdf_chunks_stay_on_one_page_and_carry_its_number(counting: Counting, pdf_document: Document) -> None:
    chunks = counting.splitter.split(pdf_document)
    assert_chunk_contract(pdf_document, chunks, counting)
    for chunk in chunks:
        page = [number for start, end, number in pdf_document.pages if start <= chunk.start and chunk.end <= end]
        assert page == [chunk.page], f"chunk {chunk.position} crosses a page or has the wrong number"
        assert chunk.text.startswith(f"Page {chunk.page} line")
    by_page = {number: sum(chunk.page == number for chunk in chunks) for number in (1, 3, 4)}
    assert all(count >= 2 for count in by_page.values()), by_page  # several chunks a page: the cut is tested


def test_chunks_follow_markdown_heading_paths(counting: Counting) -> None:
    sentence = "The harbour board met on Monday and approved the ferry budget for the season."
    text = (
        "# Harbour Almanac\n\n"
        + " ".join([sentence] * 3)
        + "\n\n## Ferries\n\n"
        + " ".join([sentence] * 30)
        + "\n\n### Night boats\n\n"
        + " ".join([sentence] * 4)
        + "\n\n## Tides\n\nSpring tides are high.\n"
    )
    document = Document(text=text, source="almanac.md", title="Harbour Almanac")
    chunks = counting.splitter.split(document)
    assert_chunk_contract(document, chunks, counting)
    marks = [
        (text.index("# Harbour Almanac"), "Harbour Almanac"),
        (text.index("## Ferries"), "Harbour Almanac > Ferries"),
        (text.index("### Night boats"), "Harbour Almanac > Ferries > Night boats"),
        (text.index("## Tides"), "Harbour Almanac > Tides"),
    ]
    assert_headings(text, chunks, marks)
    assert sum(chunk.heading == "Harbour Almanac > Ferries" for chunk in chunks) >= 2  # a long section is cut


def test_split_is_deterministic(counting: Counting) -> None:
    document = load(SEOUL)
    assert counting.splitter.split(document) == counting.splitter.split(document)


# -- sentences -----------------------------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    spans = sentence_spans(text)
    return [text[start:end] for start, end in spans]


def test_abbreviations_and_decimals_do_not_end_sentences() -> None:
    text = "The U.S. Treasury sent Mr. Bessent to Seoul. Tariffs rose 3.5 Percent on Jan. 5 in the U.K. market."
    assert sentences(text) == [
        "The U.S. Treasury sent Mr. Bessent to Seoul.",
        "Tariffs rose 3.5 Percent on Jan. 5 in the U.K. market.",
    ]


def test_question_and_exclamation_marks_end_sentences() -> None:
    assert sentences("Why Seoul? Because it is neutral! Talks start Monday.") == [
        "Why Seoul?",
        "Because it is neutral!",
        "Talks start Monday.",
    ]
    assert sentences("He asked “Why now?” Nobody knew.") == ["He asked “Why now?”", "Nobody knew."]


def test_line_breaks_end_sentences() -> None:
    assert sentences("Key Facts\n- first point without a period\n\n  indented line\r\nlast") == [
        "Key Facts",
        "- first point without a period",
        "indented line",
        "last",
    ]


def test_sentence_spans_are_stripped_offsets_within_the_range() -> None:
    text = "  Intro.  First one. Second one!  \n\n Third.  "
    start, end = text.index("First"), text.index("Third")
    spans = sentence_spans(text, start, end)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one!"]
    assert all(start <= s < e <= end for s, e in spans)
    assert sentence_spans("   \n ... \n") == []  # no letters, no sentence


def test_a_source_attribution_ends_its_sentence_and_is_no_quotable_sentence() -> None:
    text = "The tell will be a promise to keep talking. (scmp.com) The bottom line is simple — Seoul is the prep room."
    assert sentences(text) == [
        "The tell will be a promise to keep talking.",
        "(scmp.com)",
        "The bottom line is simple — Seoul is the prep room.",
    ]
    chunk = Chunk(id="c", doc_id="d", text=text, title="Seoul", start=0, end=len(text))
    assert [text[s:e] for s, e, _ in quotable_sentences(chunk)] == [
        "The tell will be a promise to keep talking.",
        "The bottom line is simple — Seoul is the prep room.",
    ]
    assert sentences(
        "It is the last prep meeting (usnews.com) ### Why send He Lifeng? He is Beijing’s top negotiator."
    ) == [
        "It is the last prep meeting",
        "(usnews.com)",
        "### Why send He Lifeng?",
        "He is Beijing’s top negotiator.",
    ]


def test_list_items_are_sentences() -> None:
    text = "Sessions in:\n- London - A historic financial center\n- Stockholm - The Swedish capital known for diplomacy"
    assert sentences(text)[1:] == [
        "- London - A historic financial center",
        "- Stockholm - The Swedish capital known for diplomacy",
    ]
    inline = "- He Lifeng will meet in Seoul on May 12-13. - The U.S. side is being led by Scott Bessent."
    assert sentences(inline) == [
        "- He Lifeng will meet in Seoul on May 12-13.",
        "- The U.S. side is being led by Scott Bessent.",
    ]
