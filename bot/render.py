"""Terminal rendering with rich: reports and answers become text here, at the edge, and nowhere else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from bot.types import DocumentRecord

if TYPE_CHECKING:
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
    for column in ("title", "source", "chunks", "ingested at"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(record.title, ", ".join(record.sources), str(record.chunks), record.ingested_at)
    console.print(table)
