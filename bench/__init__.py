"""Benchmarks: Veche against Synapse on the same machine, in one run.

`python -m bench` starts each server in turn (SQLite, open registration, no rate limits,
loopback only), drives it with real client-server API calls (bench/scenarios.py), and
writes a table of both and their ratio to bench/RESULTS.md.
"""
