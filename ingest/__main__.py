"""`python -m ingest [PATH ...]`: the same as `citebot ingest`."""

import sys

from bot.cli import main

sys.exit(main(["ingest", *sys.argv[1:]]))
