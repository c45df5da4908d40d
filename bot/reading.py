"""Reading questions the way people write them: "yo when r the seoul talks", "how bad are the tariffs rn", "what did
besent say". Chat shorthand is spelled out and fillers dropped (`bot/lexicon/chat.tsv`), and a word the corpus
never uses that is a letter or two away from one it uses often ("besent" -> "bessent", "greenspen" ->
"greenspan") is read as that word. The reading is what search, the answerer's features and grounding see; the
question shown back stays as typed, and "doesn't mention" quotes the words as they were typed.

A word is corrected only when the corpus does not know it and it is no English word ("dates", "vague" and
"chats" are left alone, `bot/lexicon/english_words.txt`), to a word of the corpus with the same first letter at most
one edit away (two for words of five letters or more) that sounds the same (Soundex) or is one slip of the fingers
away (a letter more, less or changed, or two swapped: "mircosoft"). Among those, one that sounds the same wins
("blare" is "blair", not "blame"; "besent" is "bessent", not "beset"), then the nearest, then one of the same length
("soeul" is "seoul", not "soul"), then the one the corpus uses most with the question's other words (and the other
corrections' candidates), then the most used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.keyword import STOP_WORDS
from bot.lexicon import chat_shorthand, english_words

_TOKEN = re.compile(r"w/|[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
# Words shorter than this are never corrected: too many others are one letter away.
SHORTEST_CORRECTED = 4


class Vocabulary(Protocol):
    """The corpus's own words (`bot.corpus.Corpus`)."""

    def word_documents(self, words: Iterable[str]) -> dict[str, int]: ...

    def words_like(self, prefix: str, shortest: int, longest: int) -> list[tuple[str, int]]: ...

    def used_together(self, word: str, others: Sequence[str]) -> int: ...


@dataclass(frozen=True)
class Reading:
    """A question as citebot reads it, and the words it read differently: (as read, as typed)."""

    text: str
    changed: tuple[tuple[str, str], ...] = ()


class QuestionReader:
    """Reads questions against a corpus's vocabulary (without one, only the shorthand is spelled out)."""

    def __init__(self, vocabulary: Vocabulary | None = None) -> None:
        self._vocabulary = vocabulary

    def read(self, text: str) -> Reading:
        shorthand = chat_shorthand()
        tokens = list(_TOKEN.finditer(text))
        corrections = self._corrections([match.group(0) for match in tokens if match.group(0).lower() not in shorthand])
        pieces: list[str] = []
        changed: list[tuple[str, str]] = []
        cursor = 0
        for match in tokens:
            typed = match.group(0)
            lowered = typed.lower()
            if lowered in shorthand and _abbreviated(text, match):
                continue  # the "U" of "U.S.", the "R" of "R&D": no shorthand
            if lowered in shorthand:
                read = shorthand[lowered]
            elif lowered in corrections:
                read = corrections[lowered]
            else:
                continue
            pieces.append(text[cursor : match.start()])
            pieces.append(read)
            cursor = match.end()
            for word in read.split():
                changed.append((word.lower(), typed))
        pieces.append(text[cursor:])
        reading = " ".join("".join(pieces).split())
        return Reading(reading or text, tuple(changed))

    def _corrections(self, typed: list[str]) -> dict[str, str]:
        """Lower-case typed word -> the corpus word it is read as (only for words that need it)."""
        if self._vocabulary is None:
            return {}
        candidates = {
            word.lower()
            for word in typed
            if word.isalpha() and len(word) >= SHORTEST_CORRECTED and word.lower() not in STOP_WORDS
        }
        if not candidates:
            return {}
        content = {word.lower() for word in typed if word.isalpha() and word.lower() not in STOP_WORDS}
        known = self._vocabulary.word_documents(candidates | content)
        unknown = sorted(candidates - known.keys() - english_words())
        options = {word: self._options(word) for word in unknown}
        corrections = {}
        for word, found in options.items():
            # The context: the question's words the corpus knows, and what the other misspelled words may be.
            context = sorted(
                set(known) | {option for other, more in options.items() if other != word for option, *_ in more}
            )
            ranked = [
                (
                    mismatch,
                    distance,
                    len(option) != len(word),  # two letters swapped or one changed, before one more or less
                    -(self._vocabulary.used_together(option, context) if context else 0),
                    -uses,
                    option,
                )
                for option, mismatch, distance, uses in found
            ]
            if ranked:
                corrections[word] = min(ranked)[-1]
        return corrections

    def _options(self, word: str) -> list[tuple[str, bool, int, int]]:
        """(corpus word, sounds different, edit distance, documents using it) of the corrections `word` allows."""
        from rapidfuzz.distance import OSA

        limit = 1 if len(word) < 5 else 2
        assert self._vocabulary is not None
        sound = soundex(word)
        found = []
        for option, uses in self._vocabulary.words_like(word[0], len(word) - limit, len(word) + limit):
            distance = OSA.distance(word, option, score_cutoff=limit)
            if distance > limit:
                continue
            mismatch = soundex(option) != sound
            if mismatch and distance != 1:
                continue
            found.append((option, mismatch, distance, uses))
        return found


def _abbreviated(text: str, match: re.Match[str]) -> bool:
    """A short token written in capitals or inside an abbreviation ("U.S.", "R&D", "N.Y.")."""
    typed = match.group(0)
    if len(typed) > 2:
        return False
    before = text[match.start() - 1] if match.start() > 0 else " "
    after = text[match.end()] if match.end() < len(text) else " "
    return typed != typed.lower() or before in ".&" or after in ".&"


_SOUNDEX = {
    letter: str(code)
    for code, letters in enumerate(("bfpv", "cgjkqsxz", "dt", "l", "mn", "r"), 1)
    for letter in letters
}


def soundex(word: str) -> str:
    """American Soundex: the first letter and three digits for how the rest sounds ("blair" and "blare": B460)."""
    letters = [letter for letter in word.lower() if letter.isalpha()]
    if not letters:
        return ""
    codes = [letters[0].upper()]
    previous = _SOUNDEX.get(letters[0], "")
    for letter in letters[1:]:
        code = _SOUNDEX.get(letter, "")
        if code and code != previous:
            codes.append(code)
        if letter not in "hw":
            previous = code
    return "".join(codes)[:4].ljust(4, "0")
