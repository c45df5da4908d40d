"""bot/coverage.py: declined and 👎 questions grouped by meaning (average-linkage clusters of their embeddings)."""

from __future__ import annotations

import numpy as np

from bot.coverage import MAX_QUESTIONS, CachedEmbed, cluster, find_gaps
from bot.embeddings import HashingEmbedder
from bot.question_log import StoredAnswer


def asked(question: str, when: str = "2025-06-01T10:00:00+00:00", support: str = "none", down: int = 0) -> StoredAnswer:
    return StoredAnswer(f"{abs(hash((question, when))):032x}"[:32], question, "", [], True, when, 0, down, support)


def test_cluster_merges_by_average_similarity_and_stops_at_the_threshold() -> None:
    vectors = np.array([[1.0, 0.0, 0.0], [0.95, 0.31, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.1, 1.0]])
    groups = sorted(sorted(group) for group in cluster(vectors, threshold=0.8))
    assert groups == [[0, 1], [2], [3, 4]]
    assert sorted(len(g) for g in cluster(vectors, threshold=-1.0)) == [5], "a threshold below -1 merges everything"
    assert cluster(np.zeros((0, 3)), 0.5) == []


def test_average_linkage_does_not_chain_distant_questions() -> None:
    # a~b and b~c are close, a and c are not: single linkage would chain all three; average linkage keeps c out.
    a, b, c = np.array([1.0, 0.0]), np.array([np.cos(0.5), np.sin(0.5)]), np.array([np.cos(1.0), np.sin(1.0)])
    groups = cluster(np.stack([a, b, c]), threshold=float(np.cos(0.55)))
    assert sorted(sorted(group) for group in groups) == [[0, 1], [2]]


def test_gaps_group_questions_by_meaning_largest_first() -> None:
    questions = [
        asked("student visa rules for study", "2025-06-01T10:00:00+00:00"),
        asked("visa rules for a student", "2025-06-02T10:00:00+00:00", support="answered", down=2),
        asked("Student visa rules for study", "2025-06-03T10:00:00+00:00"),  # the same question again
        asked("weather in Seoul tomorrow", "2025-06-01T11:00:00+00:00"),
        asked("Seoul weather tomorrow", "2025-06-01T12:00:00+00:00", support="closest"),
        asked("football final winner", "2025-06-04T10:00:00+00:00"),
    ]
    embedder = HashingEmbedder()
    gaps = find_gaps(questions, embedder.embed_documents, threshold=0.5)
    assert [gap.count for gap in gaps] == [3, 2, 1]
    visa, weather, football = gaps
    assert [s.question for s in visa.examples] == ["Student visa rules for study", "visa rules for a student"]
    assert (visa.declined, visa.voted_down, visa.latest) == (2, 1, "2025-06-03T10:00:00+00:00")
    assert {s.question for s in weather.questions} == {"weather in Seoul tomorrow", "Seoul weather tomorrow"}
    assert football.examples[0].question == "football final winner"
    assert embedder.calls == 1, "all questions are embedded in one call"


def test_gaps_of_nothing_and_the_cap() -> None:
    assert find_gaps([], HashingEmbedder().embed_documents) == []
    many = [
        asked(f"question number {i}", f"2025-06-01T10:00:{i % 60:02d}.{i:06d}+00:00") for i in range(MAX_QUESTIONS + 50)
    ]
    seen: list[int] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.append(len(texts))
        return HashingEmbedder().embed_documents(texts)

    gaps = find_gaps(many, embed, threshold=0.99)
    assert seen == [MAX_QUESTIONS] and sum(gap.count for gap in gaps) == MAX_QUESTIONS


def test_cached_embed_embeds_each_text_once_and_forgets_the_oldest() -> None:
    embedder = HashingEmbedder()
    asked: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        asked.append(texts)
        return embedder.embed_documents(texts)

    cached = CachedEmbed(embed, capacity=3)
    first = cached(["a b", "c d", "a b"])
    assert asked == [["a b", "c d"]] and np.allclose(first[0], first[2])
    again = cached(["c d", "e f"])
    assert asked[-1] == ["e f"] and np.allclose(again, embedder.embed_documents(["c d", "e f"]))
    cached(["g h"])  # four texts seen, room for three: "a b" (least recently used) goes
    cached(["a b"])
    assert asked[-1] == ["a b"] and len(asked) == 4
