"""`python -m bench`: run the benchmarks and write the report.

python -m bench                      # everything; writes docs/benchmarks.md and the plot
python -m bench --smoke              # tiny sizes, a few seconds each: keeps the harness working
python -m bench --db sqlite --scenario send --scenario fanout
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench import report
from bench.procs import raise_open_files
from bench.run import FULL, SMOKE, Plan, run

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    p.add_argument("--db", action="append", choices=["sqlite", "postgres"], help="repeatable")
    p.add_argument("--scenario", action="append", help="repeatable; default: all")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="JSON folder")
    p.add_argument(
        "--report", type=Path, default=None, help="Markdown report (default docs/benchmarks.md)"
    )
    p.add_argument("--profile", type=Path, help="record py-spy profiles of Reverb here")
    args = p.parse_args(argv)
    raise_open_files()
    plan = Plan(sizes=SMOKE if args.smoke else FULL)
    if args.db:
        plan = replace(plan, databases=tuple(args.db))
    if args.profile:
        plan = replace(plan, profile=args.profile)
    if args.scenario:
        plan = replace(plan, scenarios=tuple(args.scenario))
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.time()
    results = run(plan)
    doc = {"meta": report.meta(command, started, smoke=args.smoke), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    json_path = args.out / f"{stamp}{'-smoke' if args.smoke else ''}.json"
    json_path.write_text(json.dumps(doc, indent=2))
    report_path = args.report or (
        args.out / "smoke.md" if args.smoke else ROOT / "docs" / "benchmarks.md"
    )
    report.write(doc, report_path, json_path)
    print(f"wrote {json_path} and {report_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
