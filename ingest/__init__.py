"""The writing side of citebot: files, web pages, feeds and sitemaps become chunks in the index (`citebot ingest`,
kept up to date by `citebot watch`)."""
