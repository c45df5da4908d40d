"""Keyword search: BM25 over the chunks (the only module that imports bm25s), and the analyzer it shares with
the extractive answerer (lower-case, stop words out, Snowball stems), so both agree on what a "term" is.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)

# Common English function words and question words: they say nothing about which passage answers.
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my myself
    no nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    s t don shouldn wasn weren won isn didn doesn hadn hasn haven couldn wouldn mightn mustn needn shan
    said says say tell told according name named whose per via yet ever""".split()
)


@lru_cache(maxsize=1)
def _stemmer() -> object:
    import Stemmer

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    return [word.lower().replace("’", "'") for word in _WORD.findall(text)]


def is_vocabulary_word(word: str) -> bool:
    """A content word worth a single-word vector: no stop word, no number, at least three letters."""
    return word not in STOP_WORDS and len(word) > 2 and not word.isdigit()


def vocabulary(text: str) -> set[str]:
    """The content words of a text as written (lower-case): what single-word vectors are kept for."""
    return {word for word in words(text) if is_vocabulary_word(word)}


def stem(word: str) -> str:
    """The analyzer's stem of one lower-case word ("talks" -> "talk")."""
    return str(_stemmer().stemWord(word))  # type: ignore[attr-defined]


def terms(text: str) -> list[str]:
    """The analyzed terms of a text: content words, stemmed ("talks" and "talk" are one term)."""
    content = [word for word in words(text) if word not in STOP_WORDS and (len(word) > 1 or word.isdigit())]
    return list(_stemmer().stemWords(content))  # type: ignore[attr-defined]


class KeywordIndex:
    """BM25 over a fixed list of texts; rebuilt (fast) when the corpus changes."""

    def __init__(self, tokenized: Sequence[Sequence[str]]) -> None:
        """`tokenized` holds each text's `terms`; see `from_texts`."""
        import bm25s

        # bm25s sets its own logger to DEBUG on import; follow the application's level instead.
        logging.getLogger("bm25s").setLevel(logging.NOTSET)
        self.size = len(tokenized)
        self._bm25 = bm25s.BM25()
        self._vocabulary: dict[str, int] = {}
        document_frequency: Counter[str] = Counter()
        for tokens in tokenized:
            document_frequency.update(set(tokens))
        self._document_frequency = document_frequency
        if self.size:
            # bm25s refuses an empty document; a placeholder token keeps positions aligned.
            self._bm25.index([list(tokens) or ["\x00"] for tokens in tokenized], show_progress=False)
            self._vocabulary = self._bm25.vocab_dict

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> KeywordIndex:
        return cls([terms(text) for text in texts])

    def idf(self, term: str) -> float:
        """Inverse document frequency; a term the corpus never uses gets the highest weight."""
        frequency = self._document_frequency.get(term, 0)
        return math.log(1.0 + (self.size - frequency + 0.5) / (frequency + 0.5))

    def knows(self, term: str) -> bool:
        return term in self._document_frequency

    def search(self, query_terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """(position, score) of the k best texts for the query terms, best first; zero scores are left out."""
        known = [term for term in query_terms if term in self._vocabulary]
        if not known or not self.size or k <= 0:
            return []
        scores = np.asarray(self._bm25.get_scores(known))
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k]
        ranked = sorted(((int(i), float(scores[i])) for i in top), key=lambda pair: -pair[1])
        return [(position, score) for position, score in ranked if score > 0]
