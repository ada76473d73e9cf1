"""The index in use: one long-lived process that keeps the embedding models loaded and
answers searches over HTTP (a JSON API) and MCP (for coding agents), every hit naming its
repository, lines, indexed commit and freshness."""
