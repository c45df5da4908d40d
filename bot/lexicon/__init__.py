"""Word lists citebot reads: data files of this package, each naming its source at its top (lines starting with #).

- `chat.tsv`: chat shorthand and what it stands for ("r" -> "are", "whats" -> "what is"; fillers -> nothing);
- `question_scaffold.txt`: words that frame a question rather than name what it asks about;
- `common_words.txt`: the commonest English words (grounding never calls one of them a rare noun);
- `english_words.txt`: English words at all common (a question's word in it is no misspelling to correct).
The last two are written by `python -m bench train` from wordfreq's data (`write_word_lists`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_FOLDER = Path(__file__).resolve().parent


def _lines(name: str) -> list[str]:
    text = (_FOLDER / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@cache
def chat_shorthand() -> dict[str, str]:
    """Shorthand (lower-case) -> what it stands for ("" for a filler)."""
    entries = {}
    for line in _lines("chat.tsv"):
        shorthand, _, meaning = line.partition("\t")
        entries[shorthand.strip().lower()] = meaning.strip()
    return entries


@cache
def question_scaffold() -> frozenset[str]:
    return frozenset(word.strip().lower() for word in _lines("question_scaffold.txt"))


# The frequencies (Zipf: log10 of uses per billion words) above which a word is common English, and English at all.
COMMON_ZIPF = 4.6
ENGLISH_ZIPF = 3.0
COMMON_WORDS = _FOLDER / "common_words.txt"
ENGLISH_WORDS = _FOLDER / "english_words.txt"


@cache
def common_words() -> frozenset[str]:
    return frozenset(_lines(COMMON_WORDS.name))


@cache
def english_words() -> frozenset[str]:
    return frozenset(_lines(ENGLISH_WORDS.name))
