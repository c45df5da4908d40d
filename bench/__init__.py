"""Benchmarks for citebot: each module exposes `main() -> None`, prints its figures and asserts nothing.

python -m bench               # every benchmark, one after another
python -m bench ingest        # one of them (see `python -m bench --list`)
python -m bench.ingest_bbc    # the same, run as its own module (accepts the module's own options)
"""
