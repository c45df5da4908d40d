"""The `citebot` command. Adapters only parse, call the core and render.

Exit codes: 0 success; 1 when something failed (a file that did not ingest, a question that errored);
2 on usage errors (unknown option, missing path, bad setting); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import Settings, load_settings
from bot.embeddings import Embedder, create_embedder
from bot.errors import CitebotError, ConfigError
from bot.store import ChunkStore

log = logging.getLogger("citebot")

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class UsageError(CitebotError):
    """Bad command-line usage: exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citebot", description="Answers questions from a document corpus with cited, verbatim passages."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="add, update and remove corpus documents in the index")
    add_ingest_arguments(ingest)

    commands.add_parser("sources", help="list the indexed documents")
    return parser


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or folders (default: corpus/)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change without writing")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def open_index(settings: Settings) -> tuple[ChunkStore, Embedder]:
    embedder = create_embedder(settings.embedding_model, settings.embedding_device)
    return ChunkStore(settings, embedder), embedder


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings()
        return int(_COMMANDS[args.command](args, settings))
    except KeyboardInterrupt:
        print("citebot: interrupted; the index is as it was before this run", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, ConfigError) as exc:
        print(f"citebot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CitebotError as exc:
        print(f"citebot: {exc}", file=sys.stderr)
        return EXIT_FAILED


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from bot.progress import progress_reporter
    from ingest.pipeline import IngestPipeline

    roots: list[Path] = args.paths or [Path("corpus")]
    for root in roots:
        if not root.exists():
            raise UsageError(f"no such file or folder: {root}; pass paths that exist (default: corpus/)")
    store, embedder = open_index(settings)
    with progress_reporter(enabled=not args.json) as progress:
        report = IngestPipeline(store, embedder, progress=progress).run(roots, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        from bot.render import render_ingest_report

        render_ingest_report(report, store.location)
    return report.exit_code


def run_sources(args: argparse.Namespace, settings: Settings) -> int:
    from bot.render import render_sources

    store, _ = open_index(settings)
    render_sources(sorted(store.documents().values(), key=lambda record: record.source))
    return 0


_COMMANDS = {"ingest": run_ingest, "sources": run_sources}
