"""Grounding: which parts of the question the retrieved passages never mention.

A question whose key term appears nowhere in what was found ("Which *airline* did Bessent fly to Seoul?") cannot be
answered by those passages, however close they are in meaning. A term counts as mentioned when a passage uses it
(same stem) or a word close to it in meaning: "Scandinavian capital" is grounded by "The Swedish capital".

What makes a missing term *salient* (able to cap the answer at `closest` on its own, and be named in it): the whole
corpus never uses it, no retrieved passage says anything close, and it is a name, a number, or a noun of the
question that is uncommon in general English ("which *airline*", "his *salary*"). Verbs and adjectives ("describe",
"hopeful") frame a question rather than name what it asks about, and common nouns ("guy", "stuff") are paraphrase
material; their absence is left to the learned confidence, which sees the share of the question's weight that
no passage mentions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bot.answering.words import WordStore, WordVectors
from bot.keyword import STOP_WORDS, is_vocabulary_word, stem, words
from bot.retrieval import Retrieval

# Words that shape a question rather than name what it asks about; never reported as missing.
QUESTION_SCAFFOLD = frozenset(
    """actually also anything basically big biggest briefly currently deal detail details different do does exactly
    explain fact facts get go going got guy guys happen happened happening happens idea important info information
    item kind know lot main mean meaning means mention mentioned mentions more most much need needs new news next
    number part point points purpose real really reason reasons role say sort specifically stand stuff summary
    summarise summarize talk talked talking thing things think type way ways whole work works yeah ok okay please
    tell told quick quickly short overall exact main key some someone something somebody""".split()
)

# cosine of two single-word MiniLM vectors above which a question word counts as paraphrased in the passages
SIMILAR_WORD = 0.6
# The commonest English words (Zipf frequency >= 4.6, about once in 40k words: "guy", "special", "place"), from
# wordfreq's data (CC BY-SA 4.0), written by `python -m bench train`; a missing noun outside it is salient.
COMMON_WORDS_FILE = Path(__file__).resolve().parent / "model" / "common_words.txt"
RARE_ZIPF = 4.6
_NUMBER = re.compile(r"^\d[\d,.]*$")


@dataclass(frozen=True)
class Grounding:
    """What the passages do not mention: `missing` are the question's words found nowhere (nor any close word),
    `salient` the subset that is a name, a number or a rare word; the weights are shares of the question's idf."""

    missing: tuple[str, ...] = ()
    salient: tuple[str, ...] = ()
    missing_weight: float = 0.0
    unmatched_weight: float = 0.0  # before the meaning check: the share of weight whose stem no passage uses

    @property
    def grounded(self) -> bool:
        return not self.salient


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """The commonest English words (see `COMMON_WORDS_FILE`)."""
    return frozenset(COMMON_WORDS_FILE.read_text(encoding="utf-8").split())


class GroundingChecker:
    """Checks questions against passages; single-word vectors are cached, so popular words are embedded once."""

    def __init__(self, word_vectors: WordVectors | None = None, similar_word: float = SIMILAR_WORD) -> None:
        self._word_vectors = word_vectors
        self.similar_word = similar_word

    def warm_up(self) -> None:
        common_words()

    def check(self, retrieval: Retrieval) -> Grounding:
        question, hits, keyword = retrieval.question, retrieval.hits, retrieval.keyword
        asked = _question_words(question.text)
        if not asked:
            return Grounding()
        passage_words: set[str] = set()
        for hit in hits:
            for text in (hit.chunk.text, hit.chunk.title, hit.chunk.heading):
                passage_words.update(words(text))
        found_stems = {stem(word) for word in passage_words} | set(question.context_terms)
        stems = {word: stem(word) for word, _ in asked}
        weights = {word: keyword.idf(stems[word]) for word, _ in asked}
        total = sum(weights.values()) or 1.0
        unmatched = [(word, kind) for word, kind in asked if stems[word] not in found_stems]
        if not unmatched:
            return Grounding()
        content = sorted(word for word in passage_words if is_vocabulary_word(word))
        close = self._close_words([word for word, _ in unmatched], content, retrieval.corpus)
        missing = [(word, kind) for word, kind in unmatched if word not in close]
        salient = tuple(
            word
            for word, kind in missing
            if not keyword.knows(stems[word]) and (kind == "name" or (kind == "noun" and word not in common_words()))
        )
        return Grounding(
            missing=tuple(word for word, _ in missing),
            salient=salient,
            missing_weight=sum(weights[word] for word, _ in missing) / total,
            unmatched_weight=sum(weights[word] for word, _ in unmatched) / total,
        )

    def _close_words(self, asked: list[str], candidates: list[str], stored: WordStore | None) -> set[str]:
        """The asked words that some candidate word is close to in meaning."""
        if self._word_vectors is None or not candidates:
            return set()
        asked_vectors = self._word_vectors.vectors(asked, stored)
        candidate_vectors = self._word_vectors.vectors(candidates, stored)
        if asked_vectors is None or candidate_vectors is None:
            return set()
        best = (asked_vectors @ candidate_vectors.T).max(axis=1)
        return {word for word, score in zip(asked, best, strict=True) if score >= self.similar_word}


# Words after which a content word is (the start of) a noun phrase: "which airline", "his salary", "a new hotel".
_NOUN_MARKERS = frozenset(
    "a an the which whose his her their its my your our this that these those any some each every another "
    "many much several".split()
)
# "What <noun> did ...": after "what", a run is a noun phrase only when a verb like these follows it.
_AUXILIARIES = frozenset("do does did is are was were will would can could should has have had".split())
WordKind = str  # "name" (a name or a number), "noun" (by the words before it), or "word"


def _question_words(text: str) -> list[tuple[str, WordKind]]:
    """The question's content words, each with what it looks like: a name or number, a noun, or another word."""
    tokens = re.findall(r"[^\W_]+(?:['’][^\W_]+)?|[^\w\s]", text)
    lowered = [token.lower().replace("’", "'").removesuffix("'s") for token in tokens]
    nouns = _head_nouns(lowered)
    found: dict[str, WordKind] = {}
    for index, (token, word) in enumerate(zip(tokens, lowered, strict=True)):
        if not _content_token(word) or word in QUESTION_SCAFFOLD:
            continue
        kind: WordKind = "word"
        if (index > 0 and token[:1].isupper() and not token.isupper()) or _NUMBER.match(word):
            kind = "name"
        elif index in nouns:
            kind = "noun"
        if found.get(word, "word") == "word" or kind == "name":
            found[word] = kind
    return list(found.items())


def _content_token(word: str) -> bool:
    return word[:1].isalnum() and word not in STOP_WORDS and (len(word) > 2 or word.isdigit())


def _head_nouns(lowered: list[str]) -> set[int]:
    """Positions of the last word of each run of content words after a determiner or wh-word: the head noun of
    "which airline", "his salary", "a sweeping deal" ("deal", not "sweeping")."""
    heads = set()
    for index, word in enumerate(lowered):
        if word not in _NOUN_MARKERS and word != "what":
            continue
        end = index + 1
        while end < len(lowered) and _content_token(lowered[end]):
            end += 1
        if end > index + 1 and (word != "what" or (end < len(lowered) and lowered[end] in _AUXILIARIES)):
            heads.add(end - 1)
    return heads


def describe_missing(words_: Sequence[str], question: str) -> str:
    """ "airline" asked as "Which airline ..." -> "an airline"; names and plurals stay as they are."""
    if not words_:
        return ""
    phrases = []
    for word in words_[:2]:
        match = re.search(rf"\b(\w+)\s+{re.escape(word)}\b", question, re.IGNORECASE)
        before = match.group(1).lower() if match else ""
        original = re.search(rf"\b{re.escape(word)}\b", question, re.IGNORECASE)
        shown = original.group(0) if original else word
        if shown[:1].isupper() or word.endswith("s") or word.isdigit() or before not in {"which", "what", "a", "an"}:
            phrases.append(f"“{shown}”" if not shown[:1].isupper() and not word.isdigit() else shown)
        else:
            phrases.append(("an " if word[0] in "aeiou" else "a ") + shown)
    return " or ".join(phrases)
