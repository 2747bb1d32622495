"""Shared tooling of the issue 9 load runs: a raw HTTP/1.1 load generator, /proc accounting, pinned servers."""
