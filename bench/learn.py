"""Learning a community's questions, by simulation: how much better answers get once operators label some questions.

The community: `tests/data/community.jsonl`, 300 questions a tech-minded Discord server might ask about even-numbered
BBC technology stories (70 % answerable from one sentence, 30 % asking a detail the story does not give), written in
its own phrasing and never used to train the shipped model. The corpus: the seed articles + all 2,225 BBC articles.
The questions are split once (by a hash of each question): 100 are only ever measured, 200 are the labelling pool.

For 20, 60 and 200 labels, on a fresh copy of the index, an operator's browser is played over HTTP against the
console (`bot.web`, served on 127.0.0.1): log in, then for each question of the pool ask it on the Ask page, open it
in the log, and mark the sentences that hold its evidence ("This answers it"; in the document view when the
retrieved passages miss it), or press "Nothing in the corpus answers it"; then press "Retrain" on the Quality page
(every form with its CSRF token) and wait for the run to finish. A fresh engine over that index then answers the
100 measured questions and the sets kept aside from all training (`natural_holdout`, `casual_aside`, `news_aside`),
before (the shipped model) and after (whatever the run left in use).

Also timed: `citebot train` with 1,000 labels (one sentence of each of 1,000 even-numbered BBC stories, labelled
as the answer to a question made from its title).

    python -m bench learn [-- --workdir DIR --rounds 20,60,200 --no-timing]
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from bench.common import BBC_NEWS, QUESTION_SETS, SEED_CORPUS, bbc_folders, print_machine, require_data
from bench.squad import index_folder
from bot.config import Settings
from bot.engine import Engine
from bot.evaluation import Case, load_cases, run_evaluation
from bot.question_log import QuestionLog
from bot.web import listen, serving

COMMUNITY = QUESTION_SETS / "community.jsonl"
MEASURED = 100  # questions only ever measured; the rest are the labelling pool
ROUNDS = (20, 60, 200)
GUARDS = ("natural_holdout.jsonl", "casual_aside.jsonl", "news_aside.jsonl")
TOKEN = "bench-operator-token-0123456789"
OPERATOR = "Sam (bench)"
TIMING_LABELS = 1000
FIGURES = ("evidence_first_quote", "evidence_anywhere", "answered_rate", "answered_precision")
GUARD_FIGURES = ("evidence_first_quote", "answered_precision", "unanswerable_not_answered")


def split(cases: Sequence[Case]) -> tuple[list[Case], list[Case]]:
    """(measured, pool): the same split every run, by a salted hash of each question (unsalted, it would be the hash
    `citebot train` puts questions aside by, and the pool would hold almost none it puts aside)."""
    ordered = sorted(cases, key=lambda case: hashlib.sha256(f"bench learn: {case.question}".encode()).hexdigest())
    return ordered[:MEASURED], ordered[MEASURED:]


# -- an operator's browser ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    doc_id: str
    start: int
    end: int
    quote: str


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_ANSWER_LINK = re.compile(r'href="/questions/([0-9a-f]+)"')
_SENTENCE = re.compile(  # a sentence and its "This answers it" form (a sentence already marked has none)
    r'<li class="sentence">\s*<span class="quote">“(?P<quote>.*?)”</span>(?:(?!</li>).)*?'
    r'name="doc_id" value="(?P<doc_id>[0-9a-f]+)">\s*'
    r'<input type="hidden" name="start" value="(?P<start>\d+)">\s*'
    r'<input type="hidden" name="end" value="(?P<end>\d+)">',
    re.S,
)
_DOCUMENT_ROW = re.compile(
    r'<a href="/doc/(?P<doc_id>[0-9a-f]+)">[^<]*</a></td>\s*<td class="break" data-label="Source">(?P<sources>.*?)</td>'
)


class Operator:
    """What an operator's browser sends and reads, as plain HTTP against the console."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)
        self.requests = 0

    def get(self, path: str) -> str:
        self.requests += 1
        response = self.http.get(path)
        response.raise_for_status()
        return response.text

    def post(self, path: str, form: dict[str, str]) -> httpx.Response:
        self.requests += 1
        response = self.http.post(path, data=form)
        if response.status_code not in (200, 303):
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:200]}")
        return response

    def log_in(self) -> None:
        self.post("/login", {"token": TOKEN, "name": OPERATOR, "next": "/"})
        self.csrf = _CSRF.search(self.get("/ask"))[1]  # type: ignore[index]

    def ask(self, question: str) -> str:
        page = self.post("/ask", {"question": question, "csrf": self.csrf}).text
        found = _ANSWER_LINK.search(page)
        if found is None:
            raise RuntimeError(f"the Ask page gave no link to the log for {question!r}")
        return found[1]

    def sentences(self, path: str) -> list[Sentence]:
        for _ in range(50):  # the log writes in the background: the page appears a moment after the answer
            response = self.http.get(path)
            self.requests += 1
            if response.status_code != 404:
                response.raise_for_status()
                return [
                    Sentence(m["doc_id"], int(m["start"]), int(m["end"]), html.unescape(m["quote"]))
                    for m in _SENTENCE.finditer(response.text)
                ]
            time.sleep(0.1)
        raise RuntimeError(f"{path} never appeared")

    def mark(self, answer_id: str, sentence: Sentence) -> None:
        form = {"csrf": self.csrf, "verdict": "answers", "doc_id": sentence.doc_id}
        self.post(f"/questions/{answer_id}/label", {**form, "start": str(sentence.start), "end": str(sentence.end)})

    def nothing_answers(self, answer_id: str) -> None:
        self.post(f"/questions/{answer_id}/label", {"csrf": self.csrf, "verdict": "unanswerable"})

    def documents(self) -> dict[str, str]:
        """source -> doc_id, from the Corpus page."""
        return {
            html.unescape(source).strip(): m["doc_id"]
            for m in _DOCUMENT_ROW.finditer(self.get("/corpus"))
            for source in m["sources"].split("<br>")
        }

    def retrain(self) -> float:
        """Press "Retrain" and wait until the Quality page no longer shows the run as running; the seconds taken."""
        started = time.perf_counter()
        self.post("/quality/train", {"csrf": self.csrf})
        while 'class="run running"' in self.get("/quality"):
            time.sleep(2)
        return time.perf_counter() - started


def label(operator: Operator, case: Case, documents: dict[str, str]) -> str:
    """Label one question as an operator would; how it went."""
    answer_id = operator.ask(case.question)
    if case.unanswerable:
        operator.nothing_answers(answer_id)
        return "nothing answers"
    holds = [s for s in operator.sentences(f"/questions/{answer_id}") if any(e in s.quote for e in case.evidence)]
    where = "among the retrieved passages"
    if not holds:  # open the story from the Corpus page and find the sentence there
        doc_id = next((doc_id for source, doc_id in documents.items() if source.endswith(case.doc)), None)
        if doc_id is None:
            return "document not found"
        holds = [
            s
            for s in operator.sentences(f"/doc/{doc_id}?label_for={answer_id}")
            if any(e in s.quote for e in case.evidence)
        ]
        where = "in the document view"
    for sentence in holds:
        operator.mark(answer_id, sentence)
    return where if holds else "no sentence holds the evidence"


# -- one round ---------------------------------------------------------------------------------------------------


@contextmanager
def console(data_dir: Path) -> Iterator[tuple[str, Settings]]:
    settings = Settings(data_dir=data_dir, web_token=SecretStr(TOKEN), _env_file=None)  # type: ignore[call-arg]
    engine = Engine(settings)
    engine.warm_up()
    log = QuestionLog.for_settings(settings)
    try:
        with serving(settings, engine, log, listen("127.0.0.1", 0)) as url:
            yield url.rstrip("/"), settings
    finally:
        log.close()


def measure(data_dir: Path, sets: dict[str, list[Case]]) -> tuple[dict[str, dict[str, float]], str | None]:
    """Each set's figures from a fresh engine over `data_dir`, and the trained model it answers with (or None)."""
    engine = Engine(Settings(data_dir=data_dir, _env_file=None))  # type: ignore[call-arg]
    engine.warm_up()
    return {name: run_evaluation(engine, cases).metrics() for name, cases in sets.items()}, engine.model_version


def run_round(base: Path, workdir: Path, pool: Sequence[Case], labels: int) -> tuple[Path, dict[str, object]]:
    data_dir = workdir / f"labels-{labels}"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(base, data_dir)
    started = time.perf_counter()
    how: dict[str, int] = {}
    with console(data_dir) as (url, settings):
        operator = Operator(url)
        operator.log_in()
        documents = operator.documents()
        for case in pool[:labels]:
            outcome = label(operator, case, documents)
            how[outcome] = how.get(outcome, 0) + 1
        labelling = time.perf_counter() - started
        training = operator.retrain()
        runs = QuestionLog.for_settings(settings).training_runs(1)
    run = runs[0] if runs else {}
    return data_dir, {
        "labels": labels,
        "how": how,
        "requests": operator.requests,
        "labelling_seconds": labelling,
        "training_seconds": training,
        "status": run.get("status"),
        "message": run.get("message"),
        "outcome": run.get("outcome"),
    }


def show(title: str, before: dict[str, float], after: dict[str, float], names: Sequence[str]) -> None:
    cells = "  ".join(
        f"{name} {before[name]:.3f} → {after[name]:.3f} ({after[name] - before[name]:+.3f})" for name in names
    )
    print(f"  {title:30s} {cells}")


# -- training time with 1,000 labels --------------------------------------------------------------------------


def time_training(base: Path, workdir: Path) -> None:
    """Label one sentence of each of 1,000 even-numbered BBC stories (a question made from its title), then time
    `citebot train` as a user runs it."""
    data_dir = workdir / "labels-1000"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(base, data_dir)
    settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    engine = Engine(settings)
    engine.corpus.refresh(fresh=True)
    log = QuestionLog.for_settings(settings)
    stories = sorted(
        (record for record in engine.documents() if re.search(r"/\d*[02468]\.txt$", record.source)),
        key=lambda record: record.source,
    )
    labelled = 0
    for record in stories:
        sentences = engine.document_sentences(record.doc_id)
        if len(sentences) < 3 or not record.title:
            continue
        start, end, quote = sentences[2]  # past the title and the lead
        question = f"what else is there on {record.title.lower()}?"
        log.add_label(question, "answers", OPERATOR, doc_id=record.doc_id, start=start, end=end, quote=quote)
        labelled += 1
        if labelled == TIMING_LABELS:
            break
    log.close()
    env = {**os.environ, **settings.environment(), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "train"], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    print(f"`citebot train` with {labelled} labels: {seconds:.0f} s (exit {result.returncode})")
    for line in result.stdout.strip().splitlines()[-12:]:
        print(f"    {line}")
    if result.returncode:
        print(result.stderr[-2000:])


# -- the whole simulation ---------------------------------------------------------------------------------------


def run(workdir: Path, rounds: Sequence[int], timing: bool) -> None:
    require_data(COMMUNITY, *bbc_folders(BBC_NEWS))
    print_machine(with_torch=False)
    measured, pool = split(load_cases(COMMUNITY))
    sets = {"community, measured half": measured}
    sets.update({Path(name).stem: load_cases(QUESTION_SETS / name) for name in GUARDS})
    print(
        f"community questions: {len(measured)} measured ({sum(not c.unanswerable for c in measured)} answerable), "
        f"{len(pool)} in the labelling pool"
    )
    engine = index_folder([SEED_CORPUS, *bbc_folders(BBC_NEWS)], workdir / "news", warm=False)
    base = engine.settings.data_dir
    del engine
    before, _ = measure(base, sets)
    for labels in rounds:
        data_dir, report = run_round(base, workdir, pool, labels)
        after, version = measure(data_dir, sets)
        print(
            f"\n{labels} labels ({', '.join(f'{n} {how}' for how, n in report['how'].items())}; "  # type: ignore[attr-defined]
            f"{report['requests']} HTTP requests, labelled in {report['labelling_seconds']:.0f} s, trained in "
            f"{report['training_seconds']:.0f} s): {report['status']}, {report['message']}"
        )
        outcome = report["outcome"]
        if isinstance(outcome, dict) and outcome.get("before"):
            print(f"  on the {outcome['aside']} labelled questions train put aside: " + json.dumps(outcome["after"]))
        print(f"  model in use: {version or 'the shipped one'}")
        show("community, measured half", before[next(iter(sets))], after[next(iter(sets))], FIGURES)
        for name in sets:
            if name in {Path(guard).stem for guard in GUARDS}:
                show(name, before[name], after[name], GUARD_FIGURES)
    if timing:
        print()
        time_training(base, workdir)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.learn")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the indexes here (default: a temp dir)")
    parser.add_argument("--rounds", default=",".join(map(str, ROUNDS)), help="label counts to simulate")
    parser.add_argument("--no-timing", action="store_true", help="skip timing `citebot train` with 1,000 labels")
    args = parser.parse_args()
    rounds = [int(part) for part in args.rounds.split(",") if part.strip()]
    if args.workdir is not None:
        run(args.workdir, rounds, not args.no_timing)
        return
    with tempfile.TemporaryDirectory(prefix="citebot-learn-") as scratch:
        run(Path(scratch), rounds, not args.no_timing)


if __name__ == "__main__":
    main()
