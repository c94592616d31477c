"""Benchmarks: `make bench` runs every module here that defines `run()` and writes bench/results.json.

Each module's `run()` returns a dict of figures (the names the issues give, e.g. `skr_release_ms`), each a
ratio against a baseline measured in the same run where one exists, and prints human-readable detail
(MB/s, per-step timings) as it goes.
"""
