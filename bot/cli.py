"""The `citebot` command. Adapters only parse, call the core and render.

Exit codes: 0 success; 1 when something failed (a file that did not ingest, a question that errored);
2 on usage errors (unknown option, missing path, bad setting); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings, load_settings
from bot.embeddings import Embedder, create_embedder, create_query_embedder, prepare_query_embedder
from bot.errors import CitebotError, ConfigError, EmbeddingError, EmptyIndexError, QuestionError
from bot.progress import announce, plain_progress, progress_reporter
from bot.render import (
    complain,
    plural,
    render_answer,
    render_evaluation,
    render_ingest_report,
    render_sources,
    render_training,
    source_json,
)
from bot.store import ChunkStore
from bot.types import DEFAULT_QUOTES, MAX_QUOTES

if TYPE_CHECKING:
    from bot.engine import Engine

log = logging.getLogger("citebot")

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
_ONE_SHOT_COMMANDS = frozenset({"ask", "sources", "eval"})


class UsageError(CitebotError):
    """Bad command-line usage: exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citebot", description="Answers questions from a document corpus with cited, verbatim passages."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    # Not `required`: without a command, `main` lists them all (argparse would only say that one is missing).
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    ingest = _command(commands, "ingest", help="add, update and remove corpus documents in the index")
    add_ingest_arguments(ingest)

    sources = _command(commands, "sources", help="list the indexed documents, with dates and origin")
    sources.add_argument(
        "--origin", choices=["file", "url", "feed", "sitemap"], action="append", help="only documents that came so"
    )
    sources.add_argument("--since", metavar="DATE", help="only documents published on or after DATE (2025-05-01)")
    sources.add_argument("--until", metavar="DATE", help="only documents published on or before DATE")
    sources.add_argument("--json", action="store_true", help="print one JSON object per document")

    watch = _command(commands, "watch", help="keep the folders, URLs and feeds of a source list ingested")
    watch.add_argument("--sources", type=Path, default=None, metavar="FILE", help="the source list (sources.toml)")

    ask = _command(commands, "ask", help="answer a question (or one per line from stdin) with citations")
    ask.add_argument("question", nargs="*", help="the question; without it, read one question per line from stdin")
    ask.add_argument("--json", action="store_true", help="print the answer JSON (one line per answer)")
    _add_quotes_option(ask)

    _command(commands, "repl", help="ask questions interactively, with follow-ups")
    discord = _command(commands, "discord", help="run the Discord bot (needs DISCORD_TOKEN)")
    discord.add_argument("--watch", action="store_true", help="also keep the source list ingested (CITEBOT_WATCH)")
    feedback = _command(commands, "feedback", help="work with the question log's 👍/👎 votes and declined questions")
    feedback_commands = feedback.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    export = _command(feedback_commands, "export", help="write the feedback as `citebot eval` JSONL lines")
    export.add_argument("--votes", choices=["down", "up", "all"], default="down", help="which votes (default: down)")
    export.add_argument("-o", "--output", type=Path, default=None, help="write here instead of standard output")
    export.add_argument(
        "--declined", action="store_true", help="also the unvoted questions the bot declined (closest or none)"
    )
    imported = _command(feedback_commands, "import", help="add labels from `citebot eval` JSONL lines")
    imported.add_argument("file", type=Path, metavar="FILE.jsonl")
    imported.add_argument("--by", default="import", metavar="NAME", help="who the labels are from (default: import)")
    trainer = _command(commands, "train", help="retrain the answer models with the operators' labels")
    trainer.add_argument("--run-id", default=None, help=argparse.SUPPRESS)  # the console's run, to report into
    web = _command(commands, "web", help="run the operator console (questions, gaps, citations in context)")
    web.add_argument("--host", default=None, help="address to bind (default: CITEBOT_WEB_HOST, else 127.0.0.1)")
    web.add_argument(
        "--port", type=_port, default=None, help="port (default: CITEBOT_WEB_PORT, else 8080; 0 picks a free one)"
    )
    _command(commands, "run", help="start the Discord bot when DISCORD_TOKEN is set, else the REPL")

    evaluate = _command(commands, "eval", help="score the engine on a JSONL file of questions")
    evaluate.add_argument("file", type=Path, metavar="FILE.jsonl")
    evaluate.add_argument("--json", action="store_true", help="print the report as one JSON object")
    _add_quotes_option(evaluate)
    return parser


def _command(commands: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand that remembers its own parser, so an unknown option is reported with that command's usage
    (argparse would report it with the top-level one)."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help[:1].upper() + help[1:])
    parser.set_defaults(usage_parser=parser)
    return parser


def _add_quotes_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "-k",
        type=_quotes,
        default=None,
        metavar="N",
        help=f"quote at most N sentences, 1 to {MAX_QUOTES} (default {DEFAULT_QUOTES})",
    )


def _quotes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_QUOTES:
        raise argparse.ArgumentTypeError(f"{value} is out of range; use 1 to {MAX_QUOTES}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; use 0 to 65535")
    return int(text)


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="PATH|URL",
        help="files, folders, or http(s) URLs of pages, RSS/Atom feeds and sitemaps (default: corpus/)",
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would change without writing")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--prune", action="store_true", help="remove pages that a feed or sitemap no longer lists")


def open_index(settings: Settings, notice: Callable[[str], None] = announce) -> tuple[ChunkStore, Embedder]:
    """The store and the batch embedder for ingestion (the model loads on the first document to embed)."""
    embedder = create_embedder(settings.embedding_model, settings.embedding_device, announce=notice)
    return ChunkStore(settings, embedder), embedder


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "usage_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings()
        status = int(_COMMANDS[args.command](args, settings))
        if argv is None and args.command in _ONE_SHOT_COMMANDS:
            # The answers are printed and the index was only read: spare the interpreter's final garbage collection
            # over everything Chroma, LangChain and ONNX Runtime loaded (half a second of a one-shot ask). Exit
            # handlers still run, so the question log is written out as usual.
            gc.freeze()
        return status
    except KeyboardInterrupt:
        if args.command == "ingest":
            complain("interrupted; every file is still indexed, in its old or its new version (run again to finish)")
        else:
            complain("interrupted")
        return EXIT_INTERRUPTED
    except (UsageError, ConfigError) as exc:
        complain(str(exc))
        return EXIT_USAGE
    except CitebotError as exc:
        complain(str(exc))
        return EXIT_FAILED


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import IngestPipeline

    targets = ingest_targets(args.targets or ["corpus"])
    with progress_reporter(enabled=not args.json) as progress:
        store, embedder = open_index(settings, progress.announce)
        pipeline = IngestPipeline.for_settings(settings, store, embedder, progress=progress)
        report = pipeline.run(targets, dry_run=args.dry_run, prune=args.prune)
        try:
            prepare_query_embedder(settings, embedder, progress.announce)
        except EmbeddingError as exc:  # the ingestion itself succeeded; the first question will try again
            complain(f"ingested, but {exc}; the first question will try again")
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        render_ingest_report(report, store.location)
    return report.exit_code


def ingest_targets(raw: Sequence[str]) -> list[str | Path]:
    """Command-line targets as the pipeline takes them: URLs as text, everything else as a path that exists."""
    from ingest.fetch import check_url, is_url

    targets: list[str | Path] = []
    for target in raw:
        if is_url(target):
            try:
                targets.append(check_url(target))
            except CitebotError as exc:
                raise UsageError(str(exc)) from None
        elif not Path(target).exists():
            raise UsageError(
                f"no such file or folder: {target}; pass paths that exist or http(s) URLs (default: corpus/)"
            )
        else:
            targets.append(Path(target))
    return targets


def run_sources(args: argparse.Namespace, settings: Settings) -> int:
    from bot.timeframe import published_between

    since, until = _day_bound(args.since, "--since"), _day_bound(args.until, "--until", end=True)
    store, _ = open_index(settings)
    everything = store.documents()
    if not everything:
        raise EmptyIndexError(store.location)  # as for `ask`: exit 1, one line saying what to do
    records = [
        record
        for record in sorted(everything.values(), key=lambda record: record.source)
        if (not args.origin or record.origin in args.origin) and published_between(record.published, since, until)
    ]
    if args.json:
        for record in records:
            print(json.dumps(source_json(record), ensure_ascii=False))
    elif not records and (args.origin or since or until):
        complain("no indexed document matches --origin/--since/--until; `citebot sources` alone lists them all")
    else:
        render_sources(records)
    return 0


def _day_bound(text: str | None, option: str, end: bool = False) -> datetime | None:
    """The start (or the end, exclusive) of the day, month or year that `--since`/`--until` names."""
    from bot.timeframe import period

    if text is None:
        return None
    named = period(text, datetime.now(UTC))
    if named is None or named.start is None or named.end is None:
        raise UsageError(f"{option} {text!r} is not a date; write it as 2025-05-01, 2025-05, 2025 or 1 May 2025")
    return named.end if end else named.start


def run_watch(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from ingest.pipeline import IngestPipeline
    from ingest.sources import load_sources
    from ingest.watch import Watcher

    sources = load_sources(args.sources or settings.sources_file)
    store, embedder = open_index(settings)
    pipeline = IngestPipeline.for_settings(settings, store, embedder, progress=plain_progress())
    watcher = Watcher(pipeline, sources, say=lambda line: print(line, file=sys.stderr, flush=True))
    signal.signal(signal.SIGTERM, lambda signum, frame: watcher.stop())
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop()
    complain("watch stopped; every source is indexed in its old or its new version")
    return 0


def open_engine(settings: Settings) -> Engine:
    """An engine ready to answer, with nothing left to load: no answer's timings include start-up.

    The index is opened and checked first, so an unreachable server or an empty index is reported before the
    model loads; the model then loads (or is exported, on first use) in a thread while LangChain is imported.
    """
    embedder = create_query_embedder(settings, announce=announce)
    store = ChunkStore(settings, embedder)
    if not store.has_documents():
        raise EmptyIndexError(store.location)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="citebot-model") as pool:
        model = pool.submit(embedder.embed_query, "warm up")
        from bot.engine import Engine  # heavy (LangChain, BM25): imported while the model loads

        engine = Engine(settings, embedder=embedder, store=store)
        engine.corpus.refresh(fresh=True)  # the local mirror, brought in step while the model loads
        model.result()  # the model's own error, if it failed to load
    engine.warm_up()
    return engine


def run_ask(args: argparse.Namespace, settings: Settings) -> int:
    from bot.question_log import QuestionLog

    batch = not args.question
    if batch:
        if sys.stdin.isatty():
            complain("reading questions from the terminal, one per line (Ctrl-D to end)")
        questions: Iterable[tuple[int, str]] = ((n, line.rstrip("\n")) for n, line in enumerate(sys.stdin, 1))
    else:
        questions = [(1, " ".join(args.question))]
    try:
        engine = open_engine(settings)
    except CitebotError as exc:
        if not args.json:
            raise
        # One object per question, as for a bad question: a reader of the JSON lines is told why, in them.
        for _, question in questions:
            if question.strip() or not batch:
                print(json.dumps({"question": question, "error": str(exc)}, ensure_ascii=False), flush=True)
        complain(str(exc))
        return EXIT_FAILED
    question_log = QuestionLog.for_settings(settings)  # written in the background, the rest at exit
    status = 0
    answered = 0
    for line_number, question in questions:
        if batch and not question.strip():
            continue
        try:
            answer = engine.ask(question, k=args.k)
        except QuestionError as exc:
            status = EXIT_FAILED
            if args.json:
                print(json.dumps({"question": question, "error": str(exc)}), flush=True)
            else:
                complain(f"{f'line {line_number}: ' if batch else ''}{exc}")
            continue
        question_log.record_answer(answer, "cli")
        if args.json:
            print(json.dumps(answer.to_json(), ensure_ascii=False), flush=True)
            continue
        if batch and answered:
            print(flush=True)  # a blank line between answers
        render_answer(answer, heading=question if batch else None)
        sys.stdout.flush()
        answered += 1
    return status


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from bot.evaluation import load_cases, run_evaluation

    cases = load_cases(args.file)
    report = run_evaluation(open_engine(settings), cases, k=args.k)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        render_evaluation(report)
    return 0


def run_repl(args: argparse.Namespace, settings: Settings) -> int:
    from bot.repl import main as repl_main

    return repl_main(settings)


def run_discord(args: argparse.Namespace, settings: Settings) -> int:
    from bot.discord_app import main as discord_main

    if settings.discord_token is not None:
        # Check the index before connecting: an unreachable server stops here in one line, and an empty index is
        # worth knowing before anyone asks (the bot still starts: it notices documents ingested later).
        store, _ = open_index(settings)
        if not store.has_documents():
            complain(f"{EmptyIndexError(store.location)}; the bot starts anyway")
    if getattr(args, "watch", False):
        settings = settings.model_copy(update={"watch": True})
    return discord_main(settings)


def run_feedback(args: argparse.Namespace, settings: Settings) -> int:
    from bot.question_log import export_command

    if args.feedback_command == "import":
        return run_import(args, settings)
    if args.output is None:
        return export_command(settings, sys.stdout, args.votes, args.declined)
    with args.output.open("w", encoding="utf-8") as output:
        return export_command(settings, output, args.votes, args.declined)


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    from bot.evaluation import load_cases
    from bot.learning import import_labels
    from bot.question_log import QuestionLog

    cases = load_cases(args.file)
    log = QuestionLog.for_settings(settings)
    if not log.enabled:
        raise UsageError("the question log is off (CITEBOT_QUESTION_LOG=false): labels have nowhere to go")
    imported = import_labels(open_engine(settings), log, cases, args.by)
    print(
        f"Imported {plural(imported.answers, 'answering sentence')} and "
        f"{plural(imported.unanswerable, 'unanswerable question')} from {args.file}"
    )
    for question in imported.not_found:
        complain(f"no sentence of the corpus holds the evidence of: {question}")
    return EXIT_FAILED if imported.not_found else 0


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    """`citebot train`: see `bot.learning`. The run is recorded in the question log (the console shows it)."""
    import os

    from bot.learning import retrain
    from bot.question_log import QuestionLog

    log = QuestionLog.for_settings(settings)
    run_id = args.run_id or log.start_training("citebot train", os.getpid())
    if run_id is None:
        raise UsageError("another training run is running (see the console's Quality page); wait for it to end")
    log.update_training(run_id, message="starting", pid=os.getpid())

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)  # a line per step: the run takes minutes
        log.update_training(run_id, message=line)

    try:
        outcome = retrain(open_engine(settings), log, progress)
    except BaseException as exc:
        log.update_training(run_id, message=f"failed: {exc}", status="failed")
        raise
    status = "published" if outcome.version else "kept"
    log.update_training(run_id, message=outcome.message, status=status, outcome=outcome.to_json())
    render_training(outcome)
    return 0


def run_web(args: argparse.Namespace, settings: Settings) -> int:
    from bot.web import DEFAULT_PORT, serve

    port = args.port if args.port is not None else (settings.web_port or DEFAULT_PORT)
    return serve(settings, args.host or settings.web_host, port)


def run_default(args: argparse.Namespace, settings: Settings) -> int:
    """`make run`: the Discord bot when a token is configured, else the local REPL; say which and why."""
    if settings.discord_token is not None:
        complain("DISCORD_TOKEN is set, starting the Discord bot (Ctrl-C to stop)")
        return run_discord(args, settings)
    complain("DISCORD_TOKEN is not set, starting the local REPL (set it in .env to run the Discord bot)")
    if settings.watch:
        complain("CITEBOT_WATCH runs with the bot only; run `citebot watch` in another terminal")
    return run_repl(args, settings)


_COMMANDS = {
    "ingest": run_ingest,
    "sources": run_sources,
    "ask": run_ask,
    "eval": run_eval,
    "repl": run_repl,
    "discord": run_discord,
    "feedback": run_feedback,
    "web": run_web,
    "run": run_default,
    "watch": run_watch,
    "train": run_train,
}


if __name__ == "__main__":  # `python -m bot.cli`: how the console starts `citebot train` in a process of its own
    sys.exit(main())
