"""The writing side of citebot: files on disk become chunks in the index (`citebot ingest`)."""
