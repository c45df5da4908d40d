"""Terminal rendering with rich: reports and answers become text here, at the edge, and nowhere else.

On a terminal, text is wrapped to its width with hanging indents (a wrapped quote stays under its source), and
paths too long for a line are shortened in the middle, never cut mid-word. Anything else (a pipe, a file) gets
one line per paragraph, unwrapped and unshortened, so `grep` and scripts see whole lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from bot.dates import format_day, format_moment, relative_dates
from bot.types import NO_ANSWER, Answer, Citation, DocumentRecord

if TYPE_CHECKING:
    from bot.evaluation import EvaluationReport
    from bot.learning import Outcome
    from ingest.pipeline import IngestReport

console = Console(highlight=False)


def complain(message: str, err: Console | None = None) -> None:
    """A `citebot:` line on stderr: wrapped at word boundaries (with a hanging indent) on a terminal, one line in
    logs and pipes."""
    paragraph(err or Console(stderr=True, highlight=False), f"citebot: {message}", indent=4, first="")


INDENT = 4
ELLIPSIS = "…"
CLOSEST_FOOTER = "closest passage, not a direct answer"
# What the answerers insert into a quoted sentence: citation markers (" [1]") and named referents ("He [He Lifeng]").
_INSERTION = re.compile(r" ?\[[^\]]*\]")


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 chunk`, `2 chunks`; `many` for irregular plurals (`1 miss`, `2 misses`)."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters: the start and the end kept, the middle replaced by an ellipsis.

    For paths and URLs, whose two ends (the folder and the file name) say the most.
    """
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    tail = (width - 1) // 2 + (width - 1) % 2
    head = width - 1 - tail
    return text[:head] + ELLIPSIS + text[len(text) - tail :]


def paragraph(
    out: Console, body: str | Text, indent: int = 0, first: str | Text | None = None, style: str = ""
) -> None:
    """Print `body` as one paragraph whose lines start at column `indent`, except the first, which starts with
    `first` when given (`"[1] "` before a title, `""` for a hanging indent).

    On a terminal it is wrapped to the width; elsewhere it stays on one line.
    """
    text = body if isinstance(body, Text) else Text(body, style=style)
    if first is None:
        first = " " * indent
    lead = first if isinstance(first, Text) else Text(first)
    indent = max(indent, lead.cell_len)
    if not out.is_terminal:
        out.print(lead + text, soft_wrap=True)
        return
    for number, line in enumerate(text.wrap(out, max(out.width - indent, 20))):
        line.rstrip()
        out.print((lead if number == 0 else Text(" " * indent)) + line, soft_wrap=True)


def fit_path(out: Console, path: str, indent: int) -> str:
    """A path or URL that fits the line after `indent` on a terminal (shortened in the middle), else whole."""
    return shorten_middle(path, max(out.width - indent, 20)) if out.is_terminal else path


# -- answers ---------------------------------------------------------------------------------------------------


def render_answer(answer: Answer, out: Console | None = None, heading: str | None = None) -> None:
    """One answer: the text, a discreet line with its support and confidence, then one entry per citation.

    `answered`: the text is made of the quotes; `closest`: the text says the corpus doesn't answer directly, then
    quotes the closest passages; `none`: "The corpus doesn't say." and what is missing when the answerer said so.
    A source repeats its quote only when the text does not already hold it (an LLM's own wording), so no quote is
    printed twice. `heading` (the question) opens the answer in
    batch mode, so each answer says what it answers.
    """
    out = out or console
    if heading is not None:
        paragraph(out, Text(heading, style="bold"), indent=3, first=Text("Q: ", style="bold cyan"))
    if answer.support == "answered":
        paragraph(out, answer.text)
        footer = f"confidence {answer.confidence:.2f}"
        paragraph(out, footer, style="dim")
    elif answer.support == "closest":
        paragraph(out, answer.text, style="yellow")
        paragraph(out, f"{CLOSEST_FOOTER} · confidence {answer.confidence:.2f}", style="dim yellow")
    else:
        text = answer.text if answer.text.startswith(NO_ANSWER[:-1]) else f"{NO_ANSWER} {answer.text}".strip()
        paragraph(out, text, style="yellow")  # no confidence line: that marks a direct answer
    if answer.note:
        paragraph(out, f"note: {answer.note}", indent=INDENT, first="", style="dim")
    text = _INSERTION.sub("", answer.text)
    for citation in answer.citations:
        render_citation(out, citation, show_quote=_INSERTION.sub("", citation.quote) not in text)


def render_citation(out: Console, citation: Citation, show_quote: bool) -> None:
    """`[n] Title`, then (indented) the quote when the answer text does not already hold it, then where it is."""
    marker = Text(f"[{citation.n}] ", style="cyan")
    indent = max(INDENT, marker.cell_len)
    title = " ".join((citation.title or citation.source).split())
    if citation.published:
        title += f" (published {format_day(citation.published)})"
    paragraph(out, Text(title, style="bold"), indent=indent, first=marker)
    if citation.context:  # the heading the quote leans on, beside it and never inside it
        paragraph(out, Text(f"under “{' '.join(citation.context.split())}”", style="dim"), indent=indent)
    if show_quote:  # one paragraph: the passage's own line breaks would break the indent
        paragraph(out, Text(f"“{' '.join(citation.quote.split())}”", style="green"), indent=indent)
    relative = relative_dates(citation.quote, citation.published)
    if relative:  # "on Monday" in a dated article: say which Monday, next to the untouched quote
        paragraph(out, Text(f"({'; '.join(str(date) for date in relative)})", style="yellow"), indent=indent)
    for line in citation_places(citation):
        paragraph(out, Text(fit_path(out, line, indent), style="dim"), indent=indent)


def citation_places(citation: Citation) -> list[str]:
    """Where the quote is: the file and character span (and page), or the web page; then the console link."""
    place = citation.url or f"{citation.source}:{citation.start}-{citation.end}"
    if citation.page is not None:
        place += f" (page {citation.page})"
    return [place, citation.link] if citation.link else [place]


def render_json(data: dict[str, Any], out: Console | None = None) -> None:
    """Pretty-printed JSON: coloured on a terminal, plain elsewhere; never wrapped, so it stays valid JSON."""
    out = out or console
    if out.is_terminal:
        out.print_json(data=data, ensure_ascii=False)
    else:
        out.print(json.dumps(data, indent=2, ensure_ascii=False), soft_wrap=True, markup=False, highlight=False)


# -- sources -------------------------------------------------------------------------------------------------


def render_sources(records: Sequence[DocumentRecord], out: Console | None = None) -> None:
    """Each document: its title, then its sources (paths or URLs, never split), chunks and ingestion time."""
    out = out or console
    if not records:
        paragraph(out, "The index is empty: run `citebot ingest corpus/` (or `make run`) to add documents.")
        return
    paragraph(out, Text(f"{plural(len(records), 'indexed document')}:", style="bold"))
    for record in records:
        paragraph(out, Text(record.title or record.source, style="bold"), indent=INDENT, first="  ")
        for source in record.sources:
            paragraph(out, Text(fit_path(out, source, INDENT), style="cyan"), indent=INDENT)
        details = [plural(record.chunks, "chunk"), f"ingested {format_moment(record.ingested_at)}"]
        if record.origin != "file":
            details.insert(0, f"from a {record.origin}" if record.origin != "url" else "from a web page")
        if record.published:
            details.insert(0, f"published {format_day(record.published)}")
        paragraph(out, Text(", ".join(details), style="dim"), indent=INDENT)


def source_json(record: DocumentRecord) -> dict[str, object]:
    """One document as `citebot sources --json` prints it."""
    return {
        "doc_id": record.doc_id,
        "title": record.title,
        "sources": list(record.sources),
        "origin": record.origin,
        "url": record.url,
        "published": record.published,
        "author": record.author,
        "fetched": record.fetched,
        "ingested_at": record.ingested_at,
        "chunks": record.chunks,
    }


# -- ingestion and evaluation ---------------------------------------------------------------------------------


def render_ingest_report(report: IngestReport, location: str, out: Console | None = None) -> None:
    out = out or console
    verb = "Would ingest" if report.dry_run else "Ingested"
    summary = Text.assemble(
        f"{verb} into {location}: ",
        (f"{report.added} added", "green"),
        ", ",
        (f"{report.changed} changed", "yellow"),
        f", {report.unchanged} unchanged, ",
        (f"{report.removed} removed", "red"),
        f", {len(report.skipped)} skipped, {len(report.failed)} failed",
    )
    paragraph(out, summary, indent=INDENT, first="")
    if report.dry_run and report.plan is not None:
        for label, sources in (
            ("add", report.plan.added),
            ("change", report.plan.changed),
            ("remove", report.plan.removed),
        ):
            for source in sources:
                paragraph(out, f"would {label}: {source}", indent=INDENT, first="  ")
    for problem in report.skipped:
        paragraph(out, f"skipped {problem.source}: {problem.reason}", indent=INDENT, first="  ")
    for problem in report.failed:
        paragraph(
            out, Text.assemble(("failed", "red"), f" {problem.source}: {problem.reason}"), indent=INDENT, first="  "
        )
    if report.dry_run:
        paragraph(
            out, f"Dry run: would write {plural(report.chunks_written, 'chunk')}; planning took {report.seconds:.1f} s."
        )
    elif report.chunks_written:
        rate = report.chunks_per_second
        loaded = f"the model loaded in {report.model_seconds:.1f} s, then " if report.model_seconds >= 0.1 else ""
        shown = f"{rate:.1f}" if rate < 10 else f"{rate:,.0f}"  # never a rate rounded to 0
        paragraph(
            out,
            f"{plural(report.chunks_written, 'chunk')} written in {report.seconds:.1f} s "
            f"({loaded}embedding {shown} chunks/s)",
        )
    else:
        paragraph(out, f"Nothing new to embed; done in {report.seconds:.1f} s.")


def render_training(outcome: Outcome, out: Console | None = None) -> None:
    """What `citebot train` did: the labelled questions, the figures before and after on those put aside, the
    guard on the shipped question sets, and what became of the new model."""
    from rich.table import Table

    from bot.learning import SHARES

    out = out or console
    paragraph(
        out,
        f"{plural(outcome.labelled, 'labelled question')}, {outcome.aside} of them put aside to judge the new model"
        + (f"; {plural(outcome.stale, 'label')} on documents that changed since (not used)" if outcome.stale else ""),
    )
    if outcome.before:
        table = Table(title="on the labelled questions put aside")
        table.add_column("figure")
        table.add_column("before", justify="right")
        table.add_column("after", justify="right")
        for name in SHARES:
            table.add_row(name.replace("_", " "), f"{outcome.before[name]:.3f}", f"{outcome.after[name]:.3f}")
        out.print(table)
    for source, figures in outcome.guard.items():
        paragraph(out, f"first quote on the shipped {source} set: {figures['before']:.3f} -> {figures['after']:.3f}")
    paragraph(out, outcome.message)


def render_evaluation(report: EvaluationReport, out: Console | None = None) -> None:
    from rich.table import Table

    out = out or console
    paragraph(out, f"citebot eval: {report.answerable} answerable, {report.unanswerable} unanswerable", style="italic")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report.metrics().items():
        table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    out.print(table)
    if report.misses:
        paragraph(out, f"{plural(len(report.misses), 'miss', 'misses')}:")
        for miss in report.misses:
            paragraph(out, f"- [{miss.kind}] {miss.question}", indent=INDENT, first="  ")
            paragraph(out, f"got: {miss.got}", indent=6, style="dim")
