"""The news figures the README promises, on the seed articles + all 2,225 BBC News articles indexed with the real
model (the corpus is benchmark data that is never shipped: the test runs where `CITEBOT_BENCH_DATA`, or a
`shared/data` folder beside the checkout, holds it, and says it is skipped otherwise)."""

from __future__ import annotations

import pytest

from bench.common import BBC_NEWS, SEED_CORPUS, bbc_folders
from bot.config import Settings
from bot.engine import Engine
from ingest.pipeline import IngestPipeline
from tests.conftest import ROOT
from tests.test_answer_quality import check_figures

pytestmark = [
    pytest.mark.model,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        not all(folder.is_dir() for folder in bbc_folders(BBC_NEWS)),
        reason=f"the BBC News corpus is not at {BBC_NEWS} (set CITEBOT_BENCH_DATA)",
    ),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    built = Engine(Settings(data_dir=tmp_path_factory.mktemp("news") / "data", _env_file=None))  # type: ignore[call-arg]
    IngestPipeline(built.store, built.embedder).run([SEED_CORPUS, *bbc_folders(BBC_NEWS)])
    built.warm_up()
    return built


def test_news_figures_hold_what_the_readme_says(engine: Engine) -> None:
    check_figures(engine, "news-figures", (ROOT / "tests" / "data" / "news_dev.jsonl",))
