"""What a question asks for, and whether a sentence offers it.

A question about a news story shares every name with the story's lead ("how much will shutting those embassies
save Jack Straw per year?"); what tells the answering sentence from the lead is the *kind* of thing asked (an
amount of money, a percentage, a count, a duration, a date, a person, an organisation, a place, a reason, what
someone said) and whether the sentence states something of that kind that the question does not already say.

`wanted_kind(question)` reads the kind from the question's wording; `offered(kind, sentence, asked_words)` finds the
spans of that kind in a sentence (patterns over the sentence's own wording: currency signs and amounts, "per cent",
numbers with units of time, month names, capitalised names with a title or an organisation's suffix, "because" and
its kin, quotation marks and verbs of saying).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The kinds of answer a question can ask for; the index is the ranker's categorical feature.
KINDS = (
    "other",
    "money",
    "percent",
    "count",
    "duration",
    "date",
    "person",
    "organisation",
    "place",
    "reason",
    "said",
    "yes-no",
    "name",  # "which/what <thing>": a name of any kind
)

_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|"
    r"eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|billion|"
    r"dozen|dozens|hundreds|thousands|millions|half|several|a few"
)
_AMOUNT = rf"(?:\d[\d,.]*|{_NUMBER_WORDS})"
_MONTHS = (
    r"January|February|March|April|May|June|July|August|September|October|November|December|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_WEEKDAYS = r"Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_TIME_UNITS = r"years?|months?|weeks?|days?|hours?|minutes?|seconds?|decades?|centuries|seasons?|nights?|terms?"
_TITLES = (
    r"Mr|Mrs|Ms|Miss|Dr|Sir|Lord|Lady|Dame|Prof|Professor|President|Chancellor|Secretary|Minister|Premier|"
    r"Judge|Justice|Senator|Governor|Mayor|Chairman|Chief|Coach|Captain|King|Queen|Prince|Princess|Pope|Bishop"
)
_ORGANISATION_WORDS = (
    r"Ltd|plc|Inc|Corp|Corporation|Group|Holdings|Bank|Council|Party|Club|United|City|Rovers|Athletic|"
    r"Association|Agency|Commission|Authority|Institute|University|College|School|Federation|Union|Board|Office|"
    r"Department|Ministry|Committee|Trust|Company|Records|Studios|Pictures|Network|Times|News|Post|Telegraph|"
    r"Guardian|Chronicle|Herald|Journal|Mail|Express|Mirror|Sun|Review|Radio|Television|TV|Airways|Airlines|"
    r"Motors|Systems|Software|Foundation|Society|Organisation|Organization|Parliament|Assembly|Court|Police|Service"
)

# Spans of each kind in a sentence (as written: names are told by their capitals).
_PATTERNS: dict[str, re.Pattern[str]] = {
    "money": re.compile(
        rf"[£$€¥]\s?\d[\d,.]*(?:\s?(?:m|bn|k|million|billion|trillion)\b)?"
        rf"|\b\d[\d,.]*\s?(?:m|bn)\b"
        rf"|\b{_AMOUNT}\s+(?:million\s+|billion\s+)?(?:pounds|dollars|euros|yen|yuan|rupees|pence|cents|p)\b",
        re.I,
    ),
    "percent": re.compile(rf"\b{_AMOUNT}\s?(?:%|per\s?cent\b|percentage points?\b)", re.I),
    "duration": re.compile(rf"\b(?:{_AMOUNT}|an?|the past|the last|the next)[\s-]+(?:{_TIME_UNITS})\b", re.I),
    "date": re.compile(
        rf"\b(?:{_MONTHS})\b\.?|\b(?:1[6-9]|20)\d\d(?:s)?\b|\b(?:{_WEEKDAYS})\b|\b\d{{1,2}}(?:st|nd|rd|th)\b"
        r"|\b(?:yesterday|today|tomorrow|last (?:week|month|year)|next (?:week|month|year)|this (?:week|month|year))\b"
    ),
    "count": re.compile(rf"\b{_AMOUNT}\b", re.I),
    "person": re.compile(
        rf"\b(?:{_TITLES})\.?\s+[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+)*"
        r"|(?<![.!?]\s)(?<!^)\b[A-Z][a-z'’-]+(?:\s+(?:de|van|von|da|di|le|la|del|bin|al)?\s*[A-Z][a-z'’-]+)+"
    ),
    "organisation": re.compile(
        rf"\b(?:[A-Z][\w&'’.-]*\s+)+(?:{_ORGANISATION_WORDS})\b|\b[A-Z][A-Z&]{{1,5}}\b(?!\s*[a-z])"
    ),
    "place": re.compile(
        r"\b(?:in|at|from|to|near|across|outside|inside)\s+(?:the\s+)?[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+)*"
    ),
    "reason": re.compile(
        r"\b(?:because|due to|owing to|as a result|in order to|so that|so as to|aimed at|amid|following|"
        r"blamed|caused by|led to|thanks to|citing|over concerns?|fears? (?:of|that)|after|since|reason|why|"
        r"to (?:help|avoid|cut|save|reduce|protect|boost|meet|ensure|allow|stop|prevent|fund|pay|make)|as part of)\b",
        re.I,
    ),
    "said": re.compile(
        r"[\"“”]|\b(?:said|says|told|called|described|warned|claimed|argued|added|insisted|admitted|"
        r"denied|stated|accused|branded|dismissed|urged|criticised|criticized|praised|welcomed)\b",
        re.I,
    ),
}
# A name of any kind, for "which <thing>" and "who": capitalised words the question does not say.
_PATTERNS["name"] = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'’&.-]*(?:\s+[A-Z][\w'’&.-]*)*")

_PERSON_NOUNS = (
    r"man|woman|person|people|player|players|minister|mp|mps|boss|chief|director|singer|actor|actress|star|coach|"
    r"manager|judge|president|leader|official|executive|chairman|chairwoman|artist|author|writer|presenter|"
    r"member|spokesman|spokeswoman|captain|striker|winger|goalkeeper|rider|driver|candidate|founder|guy|bloke|"
    r"lady|girl|boy|chancellor|secretary|host|comedian|musician|rapper|band member|celebrity|analyst|economist"
)
_ORGANISATION_NOUNS = (
    r"company|companies|firm|firms|team|teams|club|clubs|party|parties|bank|banks|council|group|band|paper|"
    r"newspaper|network|channel|broadcaster|studio|label|airline|publisher|body|authority|agency|organisation|"
    r"organization|union|side|retailer|supermarket|carrier|operator|website|site|service|brand|charity|court|"
    r"government|department|ministry|watchdog|regulator|institute|university|school|college"
)
_PLACE_NOUNS = (
    r"city|cities|country|countries|place|places|town|towns|stadium|venue|state|region|county|ground|hotel|"
    r"hospital|prison|island|village|area|nation|capital|continent|location|street|arena|circuit|course"
)
_MONEY_WORDS = (
    r"cost|costs|costing|pay|paid|paying|spend|spent|spending|worth|raise|raised|save|saved|saving|savings|"
    r"sell|sold|earn|earned|earns|charge|charged|fine|fined|price|priced|budget|fund|funding|bid|offer|loan|"
    r"debt|debts|profit|profits|loss|losses|revenue|revenues|sales|turnover|wage|wages|salary|bonus|fee|fees|"
    r"money|cash|investment|invest|invested|compensation|damages|deal|takeover|bill|tax|taxes|subsidy|grant|"
    r"prize|value|valued|owe|owed|borrow|borrowing|lend|lent|afford|bill|tab"
)
_CHANGE_WORDS = (
    r"rise|rose|risen|fall|fell|fallen|grow|grew|grown|increase|increased|decrease|decreased|drop|dropped|cut|up|"
    r"down|higher|lower|jump|jumped|climb|climbed|slump|slumped|shrink|shrank"
)

_A_FEW_WORDS = r"(?:\s+[\w'’&.-]+){0,4}?"  # "which [US treasury] official", "which [JP Morgan] analyst"
_MONEY_NOUNS = (
    r"price|fine|sum|figure|fee|fees|salary|bonus|prize money|debts?|revenue|profits?|loss|losses|budget|bill|cost|"
    r"value|compensation|damages|tab|wages?|turnover|sales|earnings|size of the"
)
_MONEY_VERBS = (
    r"pay|paid|cost|costing|spend|spent|earn|earned|take|took|make|made|gross|grossed|fetch|fetched|owe|sell for|"
    r"sold for|go for|went for|raise|raised|save|saved|charge|charged|lose|lost|bid|offer|offered|worth"
)
_PEOPLE_ASKED = (
    rf"{_PERSON_NOUNS}|analysts?|officials?|economist|ref|referee|msp|mep|lawyer|reporter|journalist|expert|"
    r"spokesperson|negotiator|envoy|ceo|boss"
)


_NOT_A_THING = (
    r"is|was|are|were|be|been|do|does|did|has|have|had|will|would|can|could|should|might|may|must|about|if|else|"
    r"happened|happens|happen|s|'s|’s"
)


def _asks(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.I)


# (kind, how the question asks for it), tried in order: the first that matches wins.
_ASKS: list[tuple[str, re.Pattern[str]]] = [
    ("duration", _asks(r"\bhow long\b", rf"\bhow many ({_TIME_UNITS})\b", r"\bfor how long\b", r"\bhow old\b")),
    ("percent", _asks(r"\bwhat (percentage|percent|proportion|share)\b", r"\bby how much\b", r"\bhow much of\b")),
    ("percent", _asks(rf"\bhow (much|far)\b.*\b({_CHANGE_WORDS})\b")),
    ("money", _asks(rf"\bhow much\b.*\b({_MONEY_WORDS})\b", rf"\b({_MONEY_WORDS})\b.*\bhow much\b")),
    (
        "money",
        _asks(
            rf"\b(what|which)(\s+[\w'’-]+){{0,3}}?\s+({_MONEY_NOUNS})\b",
            rf"\bwhat (did|does|do|will|would|has|had|is|was|are|were) .+ ({_MONEY_VERBS})\b",
            r"\bhow much money\b",
        ),
    ),
    (
        "count",
        _asks(
            r"\bhow (many|much|often|far|big|large|high|tall|fast)\b",
            r"\bwhat (number|amount|score|ranking|rank|position)\b",
            r"\bnumber what\b",
        ),
    ),
    (
        "date",
        _asks(
            r"^\W*when\b",
            r"\bwhen\W*$",
            r"\b(what|which) (year|date|day|month|time|century|decade|season)\b",
            r"\bsince when\b",
            r"\bwhen (is|was|will|did|does|do|are|were|has|had)\b",
            r"\bdates?\W*$",
        ),
    ),
    (
        "reason",
        _asks(
            r"^\W*why\b",
            r"\bwhy\W*$",
            r"\bwhy (is|was|did|does|do|are|were|has|have|had|would|will)\b",
            r"\bhow come\b",
            r"\bwhat (was|is|were|are) the (main )?(reason|cause|point)",
            r"\bwhat (caused|led|prompted|made|got)\b",
            r"\b(for )?what reason\b",
            r"\bany reason\b",
        ),
    ),
    (
        "said",
        _asks(
            r"\bwhat (did|does|has|had|have|do) .+ (say|said|call|tell|describe|claim|warn|argue|think|reckon|"
            r"predict|admit|promise)\b",
            r"\bhow did .+ (react|respond)\b",
            r"\bwhat was .+ (reaction|response|verdict)\b",
            r"\bwhat .+ (said|says) about\b",
        ),
    ),
    (
        "person",
        _asks(r"\bwho(m|se|'s|’s)?\b", rf"\b(which|what){_A_FEW_WORDS}\s+({_PEOPLE_ASKED})\b", r"\bnames? of the\b"),
    ),
    ("organisation", _asks(rf"\b(which|what){_A_FEW_WORDS}\s+({_ORGANISATION_NOUNS})\b")),
    (
        "place",
        _asks(
            r"^\W*where\b",
            r"\bwhere\W*$",
            r"\bwhere (is|was|are|were|will|did|does|do|has|had)\b",
            rf"\b(which|what)( kind of| kinda| sort of)?{_A_FEW_WORDS}\s+({_PLACE_NOUNS})\b",
        ),
    ),
    (
        "yes-no",
        _asks(r"^\W*(is|are|was|were|do|does|did|can|could|will|would|has|have|had|should|isn't|wasn't|didn't)\b"),
    ),
    (
        "name",
        _asks(
            # "which team", "what company": not "what was reported", "what happened next"
            rf"\b(which|what) (?!({_NOT_A_THING})\b)[a-z]+\b(?! (is|was|are|were|do|does|did)\b)",
            r"\bcalled\W*$",
            r"\bwhat .* called\b",
        ),
    ),
]


def wanted_kind(question: str) -> str:
    """The kind of answer the question asks for (one of `KINDS`), from its wording; "other" when it says none."""
    for kind, asks in _ASKS:
        if asks.search(question):
            return kind
    return "other"


def offered(kind: str, sentence: str, asked: Iterable[str] = ()) -> list[tuple[int, int]]:
    """Spans of `sentence` of the kind asked for that the question does not already say (`asked`: its words,
    lower-case). Money, percent and durations also count as a count; a count is any number."""
    pattern = _PATTERNS.get(kind)
    if pattern is None:
        return []
    said = {word.lower() for word in asked}
    spans = []
    for match in pattern.finditer(sentence):
        text = match.group(0).strip().lower()
        words = re.findall(r"[^\W_]+", text)
        if words and all(word in said for word in words):
            continue  # the question says it already ("in 2004" asked about 2004)
        spans.append((match.start(), match.end()))
    return spans


def near(spans: list[tuple[int, int]], places: list[tuple[int, int]], sentence: str, window: int = 60) -> bool:
    """Whether one of `spans` lies within `window` characters of one of `places` (the focus words' places)."""
    return any(
        abs(start - place_start) <= window or abs(end - place_end) <= window
        for start, end in spans
        for place_start, place_end in places
    )
