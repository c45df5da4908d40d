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

from bot.answering.words import WordStore, WordVectors
from bot.keyword import STOP_WORDS, is_vocabulary_word, stem, words
from bot.lexicon import common_words, question_scaffold
from bot.retrieval import Retrieval

# cosine of two single-word MiniLM vectors above which a question word counts as paraphrased in the passages
SIMILAR_WORD = 0.6
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


class GroundingChecker:
    """Checks questions against passages; single-word vectors are cached, so popular words are embedded once."""

    def __init__(self, word_vectors: WordVectors | None = None, similar_word: float = SIMILAR_WORD) -> None:
        self._word_vectors = word_vectors
        self.similar_word = similar_word

    def warm_up(self) -> None:
        common_words()

    def check(self, retrieval: Retrieval) -> Grounding:
        question, hits, keyword = retrieval.question, retrieval.hits, retrieval.keyword
        asked = _question_words(question.reading)
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
        if not _content_token(word) or word in question_scaffold():
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


# Words that join the parts of one name: "Pride and Prejudice", "Bank of England", "Fédération de Football".
_NAME_JOINERS = frozenset("and of the de du des la le del van von & 's".split())


def describe_missing(words_: Sequence[str], question: str) -> str:
    """What the corpus doesn't mention, as the question wrote it: "airline" asked as "Which airline ..." -> "an
    airline"; a name of several words is quoted whole ("Who wrote Pride and Prejudice?" -> “Pride and
    Prejudice”); at most two phrases, joined by "or"."""
    if not words_:
        return ""
    tokens = list(re.finditer(r"[^\W_]+(?:['’][^\W_]+)?|&", question))
    lowered = [token.group(0).lower().replace("’", "'").removesuffix("'s") for token in tokens]
    wanted = set(words_)
    phrases: list[str] = []
    used: set[int] = set()
    for word in words_:
        if len(phrases) == 2:
            break
        places = [i for i, token in enumerate(lowered) if token == word]
        if places and all(i in used for i in places):
            continue  # part of a name already shown
        index = next((i for i in places if i not in used), None)
        if index is None:
            phrases.append(f"“{word}”")
            continue
        first = last = index
        # A name runs on through other missing words, and over a joiner between two of them.
        while True:
            if last + 1 < len(tokens) and lowered[last + 1] in wanted:
                last += 1
            elif last + 2 < len(tokens) and lowered[last + 1] in _NAME_JOINERS and lowered[last + 2] in wanted:
                last += 2
            else:
                break
        while first > 0 and lowered[first - 1] in wanted:
            first -= 1
        used.update(range(first, last + 1))
        shown = question[tokens[first].start() : tokens[last].end()]
        before = lowered[first - 1] if first > 0 else ""
        if first != last:
            phrases.append(f"“{shown}”")
        elif shown[:1].isupper() or shown.isdigit():
            phrases.append(shown)
        elif word.endswith("s") or before not in {"which", "what", "a", "an"}:
            phrases.append(f"“{shown}”")
        else:
            phrases.append(("an " if word[0] in "aeiou" else "a ") + shown)
    return " or ".join(dict.fromkeys(phrases))
