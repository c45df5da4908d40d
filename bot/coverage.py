"""Coverage gaps: the questions the bot declined or that users voted down, grouped by meaning, so an operator sees
what the corpus is missing ("nine people asked about visa rules") rather than a long list of misses.

The questions are embedded with the engine's model and grouped by average-linkage agglomerative clustering on
cosine similarity: the two most similar groups merge until no two are more similar than `threshold`. Average
linkage keeps a group about one topic (single linkage would chain "visa rules" to "visa fees" to "fees" ...).
Identical questions (up to case and spacing) are embedded once and weigh by how often they were asked. Each merge
scans the similarity matrix, so the input is capped at the newest `MAX_QUESTIONS` misses.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bot.question_log import StoredAnswer, question_key

# Cosine similarity above which two groups of questions are one topic. With all-MiniLM-L6-v2, rewordings of one
# question score 0.6-0.9 and different questions about one broad subject 0.3-0.5.
DEFAULT_THRESHOLD = 0.55
MAX_QUESTIONS = 1000
EXAMPLES = 5

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Gap:
    """One topic the corpus falls short on: its questions, newest first."""

    questions: tuple[StoredAnswer, ...]

    @property
    def count(self) -> int:
        return len(self.questions)

    @property
    def examples(self) -> list[StoredAnswer]:
        """Up to `EXAMPLES` distinct questions, newest first."""
        seen: set[str] = set()
        found: list[StoredAnswer] = []
        for stored in self.questions:
            key = question_key(stored.question)
            if key not in seen:
                seen.add(key)
                found.append(stored)
            if len(found) == EXAMPLES:
                break
        return found

    @property
    def declined(self) -> int:
        return sum(stored.declined for stored in self.questions)

    @property
    def voted_down(self) -> int:
        return sum(stored.verdict == "down" for stored in self.questions)

    @property
    def latest(self) -> str:
        return max(stored.created_at for stored in self.questions)


def find_gaps(questions: Sequence[StoredAnswer], embed: Embed, threshold: float = DEFAULT_THRESHOLD) -> list[Gap]:
    """Group the questions by meaning; the largest group first (ties: the most recent first)."""
    questions = sorted(questions, key=lambda stored: stored.created_at, reverse=True)[:MAX_QUESTIONS]
    by_text: dict[str, list[StoredAnswer]] = {}
    for stored in questions:
        by_text.setdefault(question_key(stored.question), []).append(stored)
    if not by_text:
        return []
    texts = [group[0].question for group in by_text.values()]
    weights = np.array([len(group) for group in by_text.values()], dtype=np.float64)
    groups = cluster(np.asarray(embed(texts), dtype=np.float64), threshold, weights)
    asked = list(by_text.values())
    gaps = [
        Gap(tuple(sorted((s for i in members for s in asked[i]), key=lambda s: s.created_at, reverse=True)))
        for members in groups
    ]
    return sorted(gaps, key=lambda gap: (gap.count, gap.latest), reverse=True)


def cluster(vectors: np.ndarray, threshold: float, weights: np.ndarray | None = None) -> list[list[int]]:
    """Average-linkage clusters of the rows of `vectors` (cosine), as lists of row indices.

    The Lance-Williams update keeps the group-to-group similarities: merging groups a and b, the similarity of the
    new group to any k is the weighted mean (w_a sim(a, k) + w_b sim(b, k)) / (w_a + w_b).
    """
    count = len(vectors)
    if count == 0:
        return []
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1.0, norms)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    size = np.ones(count) if weights is None else weights.astype(np.float64).copy()
    members: list[list[int]] = [[index] for index in range(count)]
    while count > 1:
        a, b = divmod(int(np.argmax(similarity)), count)
        if similarity[a, b] < threshold:
            break
        merged = (size[a] * similarity[a] + size[b] * similarity[b]) / (size[a] + size[b])
        similarity[a, :] = merged
        similarity[:, a] = merged
        similarity[a, a] = -np.inf
        similarity[b, :] = -np.inf
        similarity[:, b] = -np.inf
        size[a] += size[b]
        members[a] += members[b]
        members[b] = []
    return [group for group in members if group]


class CachedEmbed:
    """An `Embed` that remembers the vectors of the texts it has seen (the newest `capacity` of them).

    Why: the console groups the same misses on every visit to the Coverage gaps page, and embedding a thousand
    questions takes seconds on a CPU; with the cache a visit only embeds the questions asked since the last one.
    """

    def __init__(self, embed: Embed, capacity: int = 4 * MAX_QUESTIONS) -> None:
        self._embed = embed
        self._capacity = capacity
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        if missing:
            fresh = np.asarray(self._embed(missing))
            with self._lock:
                self._vectors.update(zip(missing, fresh, strict=True))
        with self._lock:
            for text in texts:
                self._vectors.move_to_end(text)
            rows = [self._vectors[text] for text in texts]
            while len(self._vectors) > self._capacity:
                self._vectors.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, 0))
