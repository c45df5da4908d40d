"""The one exception tree of citebot. Every message is one line that says what was wrong and what to do.

CitebotError
├── ConfigError          a setting is missing or malformed
│   └── SourcesError     the source list (sources.toml) is missing or malformed
├── StoreError           the vector store cannot be opened or written (e.g. Chroma server unreachable)
├── EmbeddingError       the embedding model cannot be loaded
├── IngestError          a document cannot be loaded (the run goes on with the others; it counts as failed)
│   ├── FetchError       a web page, feed or sitemap cannot be fetched (404, timeout, too large, wrong type)
│   │   └── BlockedURL   refused before fetching: not http(s), a private address, or disallowed by robots.txt
│   └── SkippedFile      deliberately not indexed (does not fail the run)
│       ├── UnsupportedFile  a file type citebot does not read
│       └── EmptyFile        a file with no text
├── QuestionError        a question that cannot be asked (empty, too long)
│   └── EmptyIndexError  no document is indexed yet
├── AnswerError          the answerer failed (the LLM answerer falls back to the extractive one)
├── BusyError            too many questions are waiting; the asker should try again shortly
└── ConsoleError         the operator console cannot listen on its address (e.g. the port is taken)
"""

from __future__ import annotations


class CitebotError(Exception):
    """Base of every error citebot raises on purpose; `str(error)` is a one-line, user-facing message."""


class ConfigError(CitebotError):
    pass


class StoreError(CitebotError):
    pass


class EmbeddingError(CitebotError):
    pass


class IngestError(CitebotError):
    pass


class FetchError(IngestError):
    pass


class BlockedURL(FetchError):
    pass


class SourcesError(ConfigError):
    pass


class SkippedFile(IngestError):
    pass


class UnsupportedFile(SkippedFile):
    pass


class EmptyFile(SkippedFile):
    pass


class QuestionError(CitebotError):
    pass


class EmptyIndexError(QuestionError):
    """No document is indexed, so there is nothing to answer from; the message says how to add some.

    `location` (where the index was looked for) is for the operator's terminal; a chat user is not told it.
    """

    def __init__(self, location: str | None = None) -> None:
        where = f" ({location})" if location else ""
        super().__init__(f"the index is empty{where}: run `citebot ingest corpus/` (or `make run`)")


class AnswerError(CitebotError):
    pass


class BusyError(CitebotError):
    pass


class ConsoleError(CitebotError):
    pass
