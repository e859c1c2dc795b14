"""``python -m bench``: run the benchmarks of a profile and write bench/results/latest.*.

Profiles: the default quick one (< 3 min on 2 cores), ``--full`` (the numbers we
quote) and ``--smoke`` (a fraction of a second each, for the test suite).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import report
from .benchmarks import BENCHMARKS
from .runner import PROFILES, BenchResult, NotAvailable, log, machine_info, package_versions

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--full", action="store_true", help="long runs: the numbers we quote")
    group.add_argument("--smoke", action="store_true", help="a fraction of a second each")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated benchmark names to run (default: all): "
        + ", ".join(name for name, _ in BENCHMARKS),
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    return parser.parse_args(argv)


def run_one(name: str, module: Any, profile: Any) -> list[BenchResult]:
    """Run one benchmark; a missing part becomes "not available", a crash "error"."""
    started = time.monotonic()
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    log(f"{name}: {module.TITLE}" + (f" (load average {load_average:.2f})" if load_average else ""))
    try:
        check = getattr(module, "check", None)
        if check is not None:
            check()
        outcome = module.run(profile)
        results: list[BenchResult] = outcome if isinstance(outcome, list) else [outcome]
    except NotAvailable as exc:
        results = [BenchResult(name, module.TITLE, status="not available", reason=str(exc))]
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        results = [
            BenchResult(
                name, module.TITLE, status="error", reason=f"{type(exc).__name__}: {first_line}"
            )
        ]
    elapsed = time.monotonic() - started
    for result in results:
        result.elapsed_s = elapsed
        result.load_average = load_average
        if result.status == "ok":
            for target in result.targets:
                verdict = {True: "met", False: "NOT met", None: "n/a"}[target["met"]]
                log(f"{result.name}: {target['description']}: {verdict} ({target['detail']})")
        else:
            log(f"{result.name}: {result.status}: {result.reason}")
    log(f"{name}: done in {elapsed:.1f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks and write the results; exit 1 if one crashed."""
    args = parse_args(argv)
    profile = PROFILES["full" if args.full else "smoke" if args.smoke else "quick"]
    selected = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = selected - {name for name, _ in BENCHMARKS}
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    log(f"profile {profile.name}, results in {args.out}")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "schema": report.SCHEMA,
        "profile": profile.name,
        "started_at": started_at,
        "machine": machine_info(),
        "versions": package_versions(),
        "settings": {k: v for k, v in vars(profile).items()},
        "benchmarks": [],
    }
    for name, module in BENCHMARKS:
        if selected and name not in selected:
            continue
        results["benchmarks"] += [r.as_dict() for r in run_one(name, module, profile)]
        # What is done so far survives a crash or an interrupt of a long run.
        _stamp(results, started, complete=False)
        report.write_json(results, args.out / "latest.json")
        report.write_markdown(results, args.out / "latest.md")
    _stamp(results, started, complete=True)
    for path in report.write_all(results, args.out):
        log(f"wrote {path}")
    log(f"all done in {results['elapsed_s']:.1f} s")
    return 1 if any(b["status"] == "error" for b in results["benchmarks"]) else 0


def _stamp(results: dict[str, Any], started: float, *, complete: bool) -> None:
    results["complete"] = complete
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["finished_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
