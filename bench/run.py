"""Run every benchmark in bench/ and write their figures to one JSON file.

Each ``bench_*.py`` module exposes ``run() -> dict``. Timings depend on the machine
and on what else runs on it: the file records the machine and the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "python": platform.python_version(), "load_average_at_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(HERE / "results.json"))
    parser.add_argument("only", nargs="*", help="names of benchmarks to run (default: all)")
    args = parser.parse_args()
    results = {"machine": machine(), "benchmarks": {}}
    if args.only and Path(args.output).is_file():  # a partial run updates its figures, keeps the rest
        results["benchmarks"] = json.loads(Path(args.output).read_text()).get("benchmarks", {})
    failed = False
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            figures = load(path).run()
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            figures, failed = {"error": traceback.format_exc().splitlines()[-1]}, True
        figures["wall_s"] = round(time.perf_counter() - start, 1)
        results["benchmarks"][name] = figures
        print(json.dumps(figures, indent=1), flush=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
