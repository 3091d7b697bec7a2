"""One report from the results of several runs of parts of the benchmarks.

    python -m bench.merge bench/results/A.json bench/results/B.json [--report docs/benchmarks.md]

Meant for runs of different scenarios or databases (say a re-run of what one run missed):
each later file adds its scenarios to the earlier ones'. A raw reference that a later run
measured again for its own database is kept as that database's (`raw-<db>`), so its send rows
are still compared with the reference measured in the same run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import report

ROOT = Path(__file__).resolve().parent.parent


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for doc in docs:
        r = doc["results"]
        for key, value in r.items():
            if key == "raw" and "raw" in results:
                for db in (k.removeprefix("reverb-") for k in r if k.startswith("reverb-")):
                    results[f"raw-{db}"] = value
            elif isinstance(value, dict) and isinstance(results.get(key), dict):
                results[key] = {**results[key], **value}
            else:
                results[key] = value
    first = docs[0]["meta"]
    commands = "; ".join(d["meta"]["command"] for d in docs)
    commits = sorted({d["meta"]["commit"] for d in docs})
    meta = {**first, "command": commands, "commit": ", ".join(commits)}
    return {"meta": meta, "results": results}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.merge", description=__doc__.splitlines()[0])
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = p.parse_args()
    doc = merge([json.loads(f.read_text()) for f in args.files])
    report.write(doc, args.report, args.files)
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
