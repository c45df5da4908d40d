"""Loaders: what text a file becomes (byte-exact for text files), its title, its pages, and every refusal."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from bot.errors import EmptyFile, IngestError, SkippedFile, UnsupportedFile
from ingest.loaders import Document, display_path, load, walk
from tests.conftest import SEED_CORPUS
from tests.fixtures_pdf import pdf_bytes, write_pdf

PAGE_ONE = ["Quarterly harbour report", "The harbour master counted 41 ferries in March.", "Tides were calm."]
PAGE_TWO = ["Second page: the granary budget.", "Grain stores rose by 3.5 percent over the winter."]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- plain text ----------------------------------------------------------------------------------------------


def test_utf8_text_is_kept_byte_exact(tmp_path: Path) -> None:
    data = "Café talks — “quoted” 東京 🚢\r\nSecond line\twith a tab.\n\n\nTrailing blank lines.\n\n".encode()
    document = load(write(tmp_path / "notes.txt", data))
    assert document.text.encode("utf-8") == data  # no newline, whitespace or Unicode normalisation
    assert document.pages == ()


def test_latin1_text_decodes_as_latin1(tmp_path: Path) -> None:
    data = b"Le caf\xe9 du port\nNa\xefve r\xe9sum\xe9 at 20\xb0C, co\xfbt 5 \xa3.\n"
    document = load(write(tmp_path / "menu.txt", data))
    assert document.text == data.decode("latin-1")
    assert "café" in document.text and "20°C" in document.text and "£" in document.text


def test_utf8_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    body = "Harbour dues rise in spring\nThe harbour board met on Monday.\n"
    document = load(write(tmp_path / "bom.txt", b"\xef\xbb\xbf" + body.encode()))
    assert document.text == body  # no "\ufeff" at offset 0, so offsets still point into the text
    assert document.title == "Harbour dues rise in spring"


# -- titles --------------------------------------------------------------------------------------------------


def test_markdown_title_comes_from_front_matter_first(tmp_path: Path) -> None:
    text = '---\nauthor: Ada\ntitle: "Tide Tables: 2024 Edition"\ndate: 2024-01-01\n---\n\n# A Heading\n\nBody.\n'
    assert load(write(tmp_path / "tides.md", text.encode())).title == "Tide Tables: 2024 Edition"


def test_markdown_title_falls_back_to_first_heading(tmp_path: Path) -> None:
    text = "A short preface line without a heading mark.\n\n# Harbour Almanac\n\nBody text.\n\n# Later Part\n"
    assert load(write(tmp_path / "almanac.md", text.encode())).title == "Harbour Almanac"
    front_matter_without_title = "---\nauthor: Ada\n---\n\n# Ferry Timetable\n\nBoats leave hourly.\n"
    assert load(write(tmp_path / "ferry.markdown", front_matter_without_title.encode())).title == "Ferry Timetable"


def test_front_matter_without_title_does_not_take_one_from_the_body(tmp_path: Path) -> None:
    text = (
        "---\nlayout: post\ndate: 2024-05-01\n---\n\n# Configuring page titles\n\n"
        "Put this at the top of a page:\n\n```yaml\n---\ntitle: My page\n---\n```\n"
    )
    assert load(write(tmp_path / "howto.md", text.encode())).title == "Configuring page titles"


def test_text_title_is_a_headline_first_line(tmp_path: Path) -> None:
    document = load(SEED_CORPUS / "china-sends-he-lifeng-to-seoul.txt")
    assert document.title == "China sends He Lifeng to Seoul"
    headline = "Harbour board approves new ferry schedule\nThe board voted on Monday.\n"
    assert load(write(tmp_path / "x.txt", headline.encode())).title == "Harbour board approves new ferry schedule"


def test_text_label_first_line_falls_back_to_file_name(tmp_path: Path) -> None:
    # "Key Facts" is a section label, not a headline: the title comes from the file name.
    assert load(SEED_CORPUS / "bessent-meets-he-lifeng-in-davos.txt").title == "Bessent meets He Lifeng in Davos"
    sentence = "The board voted on Monday to approve it.\nMore text.\n"
    assert load(write(tmp_path / "board_minutes.txt", sentence.encode())).title == "Board minutes"


def test_a_title_from_the_file_name_keeps_the_casing_the_document_uses(tmp_path: Path) -> None:
    # "he" is a pronoun on its own but part of a name in "He Lifeng"; a capital at a sentence start means nothing.
    text = "Notes\nThey met in Davos. He said the US delegation and He Lifeng agreed. Then he left.\n"
    assert load(write(tmp_path / "us-envoy-meets-he-lifeng-in-davos.txt", text.encode())).title == (
        "US envoy meets He Lifeng in Davos"
    )
    only_at_sentence_starts = "Notes\nMeetings resumed. Meetings ended.\n"
    assert load(write(tmp_path / "meetings.txt", only_at_sentence_starts.encode())).title == "Meetings"


# -- HTML ----------------------------------------------------------------------------------------------------

HTML = """<!doctype html>
<html><head>
  <title>  Harbour
     News </title>
  <style>body { color: red; } .secret-style {}</style>
  <script>var trackingCode = "SECRET-SCRIPT";</script>
</head>
<body>
  <nav><a href="/">Home</a> <a href="/menu">NAVIGATION-MENU</a></nav>
  <main>
    <nav class="breadcrumbs"><ul><li>BREADCRUMB-HOME</li><li>BREADCRUMB-NEWS</li></ul></nav>
    <style>.inline-style { display: none; }</style>
    <h1>Ferries return</h1>
    <p>The first ferry of the season <b>docked</b> at dawn.</p>
    <h2>Timetable</h2>
    <ul><li>Boats leave hourly.</li><li>Night boats on Fridays.</li></ul>
    <script>console.log("SECRET-INLINE")</script>
  </main>
  <footer>FOOTER-COPYRIGHT</footer>
</body></html>
"""


def test_html_keeps_main_text_and_headings_and_drops_scripts_styles_nav(tmp_path: Path) -> None:
    document = load(write(tmp_path / "news.html", HTML.encode()))
    assert document.title == "Harbour News"
    for dropped in ("SECRET", "color: red", "style", "NAVIGATION-MENU", "BREADCRUMB", "FOOTER"):
        assert dropped not in document.text
    assert document.text.split("\n\n") == [
        "# Ferries return",
        "The first ferry of the season docked at dawn.",
        "## Timetable",
        "Boats leave hourly.",
        "Night boats on Fridays.",
    ]


def test_html_without_main_reads_the_body_without_page_furniture(tmp_path: Path) -> None:
    page = """<html><head><title>Canal notice</title></head><body>
    <header><h1>SITE-HEADER</h1></header>
    <nav><ul><li>MENU-ONE</li><li>MENU-TWO</li></ul></nav>
    <aside><p>SIDEBAR-AD</p></aside>
    <h2>Lock repairs</h2><p>The canal lock closes for repairs on Monday.</p>
    <noscript><p>NOSCRIPT-TEXT</p></noscript>
    <form><p>FORM-TEXT</p></form>
    <table><tr><td>Lock 3</td><td>closed</td></tr></table>
    <footer><p>FOOTER-TEXT</p></footer>
    </body></html>"""
    document = load(write(tmp_path / "notice.html", page.encode()))
    assert document.title == "Canal notice"
    assert document.text.split("\n\n") == [
        "## Lock repairs",
        "The canal lock closes for repairs on Monday.",
        "Lock 3",
        "closed",
    ]


def test_html_without_title_uses_first_heading(tmp_path: Path) -> None:
    page = "<html><body><article><h2>Canal Works</h2><p>The canal reopens in May.</p></article></body></html>"
    document = load(write(tmp_path / "canal.htm", page.encode()))
    assert document.title == "Canal Works"
    assert "The canal reopens in May." in document.text


# -- PDF -----------------------------------------------------------------------------------------------------


def test_pdf_text_of_every_page_with_page_spans(tmp_path: Path) -> None:
    document = load(write_pdf(tmp_path / "report.pdf", [PAGE_ONE, PAGE_TWO], title="Harbour Report 2024"))
    assert document.title == "Harbour Report 2024"
    assert [number for _, _, number in document.pages] == [1, 2]
    (start1, end1, _), (start2, end2, _) = document.pages
    assert document.text[start1:end1] == "\n".join(PAGE_ONE)
    assert document.text[start2:end2] == "\n".join(PAGE_TWO)
    assert (start1, end2) == (0, len(document.text))
    assert document.text[end1:start2] == "\n\n"


def test_pdf_page_numbers_skip_blank_pages(tmp_path: Path) -> None:
    document = load(write_pdf(tmp_path / "gap.pdf", [PAGE_ONE, [], PAGE_TWO]))
    assert [number for _, _, number in document.pages] == [1, 3]
    start, end, _ = document.pages[1]
    assert document.text[start:end] == "\n".join(PAGE_TWO)
    assert document.title == "Quarterly harbour report"  # no metadata title: the headline first line


def test_fixture_pdf_is_strictly_valid() -> None:
    # The hand-computed xref must be exact: strict parsing refuses a file with wrong offsets.
    reader = PdfReader(io.BytesIO(pdf_bytes([PAGE_ONE, PAGE_TWO], title="T")), strict=True)
    assert [page.extract_text() for page in reader.pages] == ["\n".join(PAGE_ONE), "\n".join(PAGE_TWO)]


def encrypted_pdf(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes([PAGE_ONE]))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("user_password", ["", "secret"], ids=["no-user-password", "user-password"])
def test_encrypted_pdf_is_refused_in_one_line(tmp_path: Path, user_password: str) -> None:
    with pytest.raises(IngestError) as error:
        load(write(tmp_path / "locked.pdf", encrypted_pdf(user_password)))
    assert not isinstance(error.value, SkippedFile)  # a failure, not a deliberate skip
    assert "encrypted" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data.replace(b"xref", b"xxxx").replace(b"obj", b"jbo"), id="no-objects"),
        pytest.param(lambda data: b"%PDF-1.4\n" + bytes(range(256)) * 8, id="garbage"),
    ],
)
def test_corrupt_pdf_is_refused_in_one_line(tmp_path: Path, mangle: Callable[[bytes], bytes]) -> None:
    with pytest.raises(IngestError) as error:
        load(write(tmp_path / "broken.pdf", mangle(pdf_bytes([PAGE_ONE, PAGE_TWO]))))
    assert not isinstance(error.value, SkippedFile)
    message = str(error.value)
    assert "PDF" in message and "\n" not in message and "Traceback" not in message


# -- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["image.png", "data.csv", "Makefile", "archive.tar.gz"])
def test_unsupported_suffix_is_skipped(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsupportedFile, match="unsupported file type"):
        load(write(tmp_path / name, b"some bytes that are text"))


@pytest.mark.parametrize("name", ["empty.txt", "empty.md", "empty.html", "empty.pdf"])
@pytest.mark.parametrize("data", [b"", b"  \n\t\r\n  "])
def test_empty_file_is_skipped(tmp_path: Path, name: str, data: bytes) -> None:
    with pytest.raises(EmptyFile):
        load(write(tmp_path / name, data))


def test_utf8_bom_only_file_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyFile):
        load(write(tmp_path / "bom-only.txt", b"\xef\xbb\xbf\n"))


def test_nul_bytes_in_text_mean_binary(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="binary") as error:
        load(write(tmp_path / "data.txt", b"header line\n\x00\x01\x02\x03 payload"))
    assert not isinstance(error.value, SkippedFile)  # a .txt that is binary is a failure the user must see
    assert "\n" not in str(error.value)


# -- walking and paths ---------------------------------------------------------------------------------------


def test_walk_recurses_sorted_and_skips_hidden_files_and_folders(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for relative in [
        "b.txt",
        "a.md",
        "sub/deeper/c.html",
        "sub/d.txt",
        ".hidden.txt",
        ".git/config.txt",
        "sub/.cache/e.txt",
        "sub/deeper/.f.md",
    ]:
        write(root / relative, b"text")
    (root / "empty-folder").mkdir()
    found = [path.relative_to(root).as_posix() for path in walk(root)]
    assert found == ["a.md", "b.txt", "sub/d.txt", "sub/deeper/c.html"]


def test_walk_of_a_file_yields_it_and_a_hidden_root_is_still_read(tmp_path: Path) -> None:
    single = write(tmp_path / "one.txt", b"text")
    assert list(walk(single)) == [single]
    hidden_root = tmp_path / ".notes"
    write(hidden_root / "kept.txt", b"text")
    assert [path.name for path in walk(hidden_root)] == ["kept.txt"]


def test_display_path_relative_inside_cwd_absolute_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    inside = write(work / "corpus" / "a.txt", b"text")
    outside = write(tmp_path / "elsewhere" / "b.txt", b"text")
    monkeypatch.chdir(work)
    assert display_path(inside) == "corpus/a.txt"
    assert display_path(Path("corpus/a.txt")) == "corpus/a.txt"
    assert display_path(outside) == outside.absolute().as_posix()
    document: Document = load(Path("corpus/a.txt"))
    assert document.source == "corpus/a.txt"
    assert load(outside).source == outside.absolute().as_posix()


def test_display_path_normalises_dot_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    write(work / "corpus" / "a.txt", b"text")
    outside = write(tmp_path / "elsewhere" / "b.txt", b"text")
    monkeypatch.chdir(work)
    # The same file must have one source however the path is spelled, or a re-ingest indexes it twice.
    assert display_path(Path("../work/corpus/a.txt")) == "corpus/a.txt"
    assert display_path(Path("corpus/../corpus/a.txt")) == "corpus/a.txt"
    assert display_path(Path("../elsewhere/b.txt")) == outside.as_posix()
