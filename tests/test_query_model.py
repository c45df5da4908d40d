"""Questions are embedded through ONNX Runtime: the same vectors as sentence-transformers, without torch.

With the real all-MiniLM-L6-v2 (marked `model`): the vectors agree, `citebot ask` never imports torch, the export
happens once (even when two processes start together), and every wait says what it waits for on a terminal.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bot.config import Settings
from bot.embeddings import MODELS_FOLDER, OnnxEmbedder, SentenceTransformerEmbedder, create_query_embedder
from bot.text import sentence_spans
from tests.conftest import ROOT, SEED_CORPUS, VENV_BIN, citebot, cli_env
from tests.test_first_use import importtime_run, run_on_terminal

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]

DEVSET = ROOT / "tests" / "data" / "devset.jsonl"
HEAVY = {"torch", "sentence_transformers", "transformers"}


def sentences() -> list[str]:
    """A few hundred texts: every sentence and line of the seed corpus, the dev set's questions, and odd cases."""
    texts: list[str] = []
    for path in sorted(SEED_CORPUS.iterdir()):
        text = path.read_text(encoding="utf-8")
        texts += [text[start:end] for start, end in sentence_spans(text)]
        texts += [line for line in text.splitlines() if line.strip()]
    texts += [json.loads(line)["q"] for line in DEVSET.read_text(encoding="utf-8").splitlines()]
    texts += [text.upper() for text in texts[:60]] + [text.lower() for text in texts[60:120]]
    texts += ["  padded on both sides  ", "x", "Zürich, São Paulo and 東京", "word " * 400]  # 400 words: truncated
    return texts


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The seed corpus ingested with the real model by `citebot ingest` on a terminal: (the folder, its screen)."""
    base = tmp_path_factory.mktemp("real")
    shutil.copytree(SEED_CORPUS, base / "corpus")
    settings = Settings(data_dir=base / "data", _env_file=None)  # type: ignore[call-arg]
    env = cli_env(settings)
    env.pop("CITEBOT_EMBEDDING_MODEL")
    status, screen = run_on_terminal([str(VENV_BIN / "citebot"), "ingest", "corpus"], env, base, 100, timeout=240)
    assert status == 0, screen
    return base, screen


def real_env(base: Path, data: str = "data") -> dict[str, str]:
    env = cli_env(Settings(data_dir=base / data, _env_file=None))  # type: ignore[call-arg]
    env.pop("CITEBOT_EMBEDDING_MODEL")
    return env


def test_onnx_vectors_match_sentence_transformers(tmp_path: Path) -> None:
    texts = sentences()
    assert len(texts) >= 300
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    onnx = create_query_embedder(settings)
    assert isinstance(onnx, OnnxEmbedder)
    torch_model = SentenceTransformerEmbedder()
    expected = torch_model.embed_documents(texts)
    got = onnx.embed_documents(texts)
    cosines = np.sum(expected * got, axis=1)
    assert cosines.min() >= 0.9999, texts[int(cosines.argmin())]
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.sum(onnx.embed_query(texts[0]) * expected[0]) >= 0.9999  # one text alone: no padding at all
    assert onnx.count_tokens(texts) == torch_model.count_tokens(texts) and onnx.max_tokens == 256
    assert onnx.embed_documents([]).shape == (0, 384)


def test_ingestion_says_what_it_waits_for_and_prepares_the_question_model(ingested: tuple[Path, list[str]]) -> None:
    base, screen = ingested
    text = "\n".join(screen)
    assert "Loading the embedding model…" in text
    assert "Preparing the embedding model for questions (once, a few seconds)…" in text
    written = r"^22 chunks written in [\d.]+ s \(the model loaded in [\d.]+ s, then embedding [\d.]+ chunks?/s\)$"
    assert re.search(written, text, re.MULTILINE)
    exports = [path.name for path in (base / "data" / MODELS_FOLDER).iterdir()]
    assert len(exports) == 2 and sum(name.endswith(".lock") for name in exports) == 1, exports


def test_ask_answers_without_torch(ingested: tuple[Path, list[str]]) -> None:
    base, _ = ingested
    result, modules = importtime_run("ask", "--json", "why Seoul?", env=real_env(base), cwd=base)
    assert result.returncode == 0, result.stderr
    assert not HEAVY & modules, HEAVY & modules
    assert {"onnxruntime", "tokenizers"} <= modules
    answer = json.loads(result.stdout)
    assert answer["support"] == "answered" and "neutral staging ground" in answer["citations"][0]["quote"]
    assert result.stderr == "", "a pipe gets no progress notices"


def test_ask_on_a_terminal_says_it_loads_the_model(ingested: tuple[Path, list[str]]) -> None:
    base, _ = ingested
    status, screen = run_on_terminal([str(VENV_BIN / "citebot"), "ask", "why Seoul?"], real_env(base), base, 100)
    assert status == 0
    shown = [line for line in screen if line.strip()]
    assert shown[0] == "Loading the embedding model…"
    assert shown[1].startswith("Because Seoul works as neutral staging ground")


def test_first_use_exports_once_even_when_two_processes_start_together(ingested: tuple[Path, list[str]]) -> None:
    base, _ = ingested
    shutil.copytree(base / "data", base / "fresh", ignore=shutil.ignore_patterns(MODELS_FOLDER))
    env = real_env(base, "fresh")
    other = subprocess.Popen(
        [str(VENV_BIN / "citebot"), "ask", "--json", "What did Bessent praise in Davos?"],
        env=env,
        cwd=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    status, screen = run_on_terminal([str(VENV_BIN / "citebot"), "ask", "why Seoul?"], env, base, 100, timeout=240)
    out, err = other.communicate(timeout=240)
    assert status == 0 and other.returncode == 0, err
    assert "soybeans" in json.loads(out)["answer"]
    notices = {
        "Preparing the embedding model for questions (first use only, about 20 s)…",
        "Waiting for another citebot process to prepare the embedding model…",
    }
    assert notices & set(screen), screen
    exports = sorted(path.name for path in (base / "fresh" / MODELS_FOLDER).iterdir())
    assert len(exports) == 2 and exports[1] == exports[0] + ".lock", exports  # one export, no leftovers
    assert citebot("ask", "why Seoul?", env=env, cwd=base).stderr == ""
