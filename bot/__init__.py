"""citebot: answers questions from a document corpus with cited, verbatim passages.

The public surface is small: `Settings`, the `Answer`/`Citation`/`Chunk` types, `Engine` and the error tree.
Adapters (CLI, REPL, Discord) render `Answer`; they never reach past the engine.
"""
