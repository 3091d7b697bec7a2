"""Reverb's benchmark harness.

`python -m bench` starts Reverb as real server processes and a raw `websockets` broadcast
server (the machine's limit), drives each from a separate load-generator process over
127.0.0.1, and writes a JSON file per run, `docs/benchmarks.md` and a latency plot.
"""
