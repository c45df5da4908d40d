"""A tiny PDF writer for tests: real text on real pages, with the cross-reference table computed by hand.

No dependency beyond the standard library. Each page is a list of lines drawn with the standard Helvetica
font, one line under the other, so a text extractor (pypdf) gets the lines back in order. Only ASCII text
is supported: it is drawn through a PDF string literal with `\\`, `(` and `)` escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

PAGE_WIDTH, PAGE_HEIGHT = 612, 792  # US Letter, in points
FONT_SIZE, LEADING, MARGIN = 11, 14, 72


def _literal(text: str) -> bytes:
    if not text.isascii():
        raise ValueError(f"fixtures_pdf draws ASCII text only: {text!r}")
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("ascii") + b")"


def _content_stream(lines: Sequence[str]) -> bytes:
    """Draw `lines` top-down: `T*` moves to the next line by the leading set with `TL`."""
    ops = [b"BT", f"/F1 {FONT_SIZE} Tf {LEADING} TL {MARGIN} {PAGE_HEIGHT - MARGIN} Td".encode()]
    for index, line in enumerate(lines):
        if index:
            ops.append(b"T*")
        ops.append(_literal(line) + b" Tj")
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


def pdf_bytes(pages: Sequence[Sequence[str]], title: str | None = None) -> bytes:
    """A valid PDF 1.4 file with one page per entry of `pages` (an empty entry makes a blank page).

    Object layout: 1 catalog, 2 page tree, 3 font, 4 info (when titled), then a page and its content
    stream for each page. Offsets in the xref table are byte offsets of each `N 0 obj` line.
    """
    objects: dict[int, bytes] = {}
    first_page = 5
    page_ids = [first_page + 2 * index for index in range(len(pages))]
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    kids = b" ".join(f"{page_id} 0 R".encode() for page_id in page_ids)
    objects[2] = b"<< /Type /Pages /Kids [" + kids + b"] /Count " + str(len(pages)).encode() + b" >>"
    objects[3] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    if title is not None:
        objects[4] = b"<< /Title " + _literal(title) + b" /Producer (citebot tests) >>"
    for page_id, lines in zip(page_ids, pages, strict=True):
        stream = _content_stream(lines) if lines else b""
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 "
            + f"{PAGE_WIDTH} {PAGE_HEIGHT}".encode()
            + b"] /Resources << /Font << /F1 3 0 R >> >> /Contents "
            + f"{page_id + 1} 0 R".encode()
            + b" >>"
        )
        objects[page_id + 1] = b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"

    size = max(objects) + 1
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")  # the binary comment marks the file as binary
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n".encode() + objects[number] + b"\nendobj\n"
    xref_offset = len(out)
    # Each xref entry is exactly 20 bytes: 10-digit offset, space, 5-digit generation, space, n/f, CR LF.
    out += f"xref\n0 {size}\n".encode()
    out += b"0000000000 65535 f\r\n"
    for number in range(1, size):
        if number in offsets:
            out += f"{offsets[number]:010d} 00000 n\r\n".encode()
        else:
            out += b"0000000000 65535 f\r\n"  # object 4 when there is no title
    info = b" /Info 4 0 R" if title is not None else b""
    out += b"trailer\n<< /Size " + str(size).encode() + b" /Root 1 0 R" + info + b" >>\n"
    out += f"startxref\n{xref_offset}\n%%EOF\n".encode()
    return bytes(out)


def write_pdf(path: Path, pages: Sequence[Sequence[str]], title: str | None = None) -> Path:
    """Write `pdf_bytes(pages, title)` to `path` and return it."""
    path.write_bytes(pdf_bytes(pages, title))
    return path
