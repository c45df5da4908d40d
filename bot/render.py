"""Terminal rendering with rich: reports and answers become text here, at the edge, and nowhere else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from bot.dates import format_day, relative_dates
from bot.types import Answer, DocumentRecord

if TYPE_CHECKING:
    from bot.evaluation import EvaluationReport
    from ingest.pipeline import IngestReport

console = Console(highlight=False)


def render_ingest_report(report: IngestReport, location: str) -> None:
    verb = "Would ingest" if report.dry_run else "Ingested"
    console.print(
        f"{verb} into {location}: [green]{report.added} added[/], [yellow]{report.changed} changed[/], "
        f"{report.unchanged} unchanged, [red]{report.removed} removed[/], {len(report.skipped)} skipped, "
        f"{len(report.failed)} failed"
    )
    if report.dry_run and report.plan is not None:
        for label, sources in (
            ("add", report.plan.added),
            ("change", report.plan.changed),
            ("remove", report.plan.removed),
        ):
            for source in sources:
                console.print(f"  would {label}: {source}", markup=False)
    for problem in report.skipped:
        console.print(f"  skipped {problem.source}: {problem.reason}", markup=False)
    for problem in report.failed:
        console.print(f"  [red]failed[/] {problem.source}: ", end="")
        console.print(problem.reason, markup=False)
    chunks = "chunks to write" if report.dry_run else "chunks written"
    console.print(
        f"{report.chunks_written} {chunks} in {report.seconds:.1f} s ({report.chunks_per_second:.0f} chunks/s)"
    )


def render_sources(records: Sequence[DocumentRecord]) -> None:
    if not records:
        console.print("The index is empty: run `citebot ingest` to add documents.")
        return
    table = Table(title=f"{len(records)} indexed document(s)")
    table.add_column("title", overflow="fold", min_width=24)
    for column in ("source", "origin", "published", "chunks", "ingested at"):
        table.add_column(column, overflow="fold")
    for record in records:
        published = format_day(record.published) or "unknown"
        ingested = record.ingested_at[:16].replace("T", " ")  # to the minute
        table.add_row(record.title, ", ".join(record.sources), record.origin, published, str(record.chunks), ingested)
    console.print(table)


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


def render_answer(answer: Answer, target: Console | None = None) -> None:
    """The answer, then one numbered source per citation: title, the quote, the file (or URL), position and date."""
    out = target or console
    style = "yellow" if answer.abstained else "bold"
    out.print(answer.text, style=style, markup=False)
    if answer.note:
        out.print(f"note: {answer.note}", style="dim", markup=False)
    for citation in answer.citations:
        place = f"{citation.source}:{citation.start}-{citation.end}"
        if citation.page is not None:
            place += f" (page {citation.page})"
        if citation.published:
            place += f" · published {format_day(citation.published)}"
        out.print(f"[{citation.n}] ", style="cyan", end="", markup=False)
        out.print(citation.title, style="bold", markup=False)
        out.print(f'    "{citation.quote}"', style="green", markup=False)
        relative = relative_dates(citation.quote, citation.published)
        if relative:  # "on Monday" in a dated article: say which Monday, next to the untouched quote
            out.print(f"    ({'; '.join(str(date) for date in relative)})", style="yellow", markup=False)
        out.print(f"    {place}", style="dim", markup=False)
        if citation.link:
            out.print(f"    {citation.link}", style="dim", markup=False)


def render_evaluation(report: EvaluationReport) -> None:
    table = Table(title=f"citebot eval: {report.answerable} answerable, {report.unanswerable} unanswerable")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report.metrics().items():
        table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    if report.misses:
        console.print(f"{len(report.misses)} miss(es):")
        for miss in report.misses:
            console.print(f"  - [{miss.kind}] {miss.question}", markup=False)
            console.print(f"      got: {miss.got}", style="dim", markup=False)
