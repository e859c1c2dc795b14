"""Write a run's results: latest.json (everything), latest.md (tables), latest.png (plots)."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

SCHEMA = "meshsrpc-bench/1"
DASH = "\u2013"  # en dash: no value
TIMES = "\u00d7"


def write_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the three files into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        write_json(results, out_dir / "latest.json"),
        write_markdown(results, out_dir / "latest.md"),
    ]
    png = write_png(results, out_dir / "latest.png")
    if png is not None:
        written.append(png)
    return written


def _atomic_write(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def write_json(results: dict[str, Any], path: Path) -> Path:
    """latest.json: machine, versions, every benchmark with figures, baselines, ratios."""
    _atomic_write(path, json.dumps(results, indent=1, sort_keys=False, default=str) + "\n")
    return path


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if unit in ("ms",):
        text = f"{value:.3f}" if value < 10 else f"{value:.1f}"
    elif unit in ("s",):
        text = f"{value:.3f}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _met(met: bool | None) -> str:
    return {True: "**met**", False: "**NOT met**", None: "n/a"}[met]


def write_markdown(results: dict[str, Any], path: Path) -> Path:
    """latest.md: one table of every figure, then the targets."""
    machine = results["machine"]
    versions = results["versions"]
    lines = [
        f"# meshsrpc benchmarks ({results['profile']} profile)",
        "",
        *(
            []
            if results.get("complete", True)
            else ["**Partial results: the run is not finished.**", ""]
        ),
        f"Run {results['started_at']} on {machine['cpu_model']} "
        f"({machine['cpus_available']} cores available, "
        f"pinning: {'server core 0 / load core 1' if machine['pinning'] else 'off'}), "
        f"Python {machine['python']}, meshsrpc {versions.get('meshsrpc')} "
        f"@ {versions.get('git_commit')}, {versions.get('redis_server') or 'redis ?'}.",
        "",
        "| benchmark | figure | meshsrpc | baseline | ratio | baseline is |",
        "|---|---|---:|---:|---:|---|",
    ]
    for bench in results["benchmarks"]:
        if bench["status"] != "ok":
            lines.append(f"| {bench['title']} | {bench['status']}: {bench['reason']} | | | | |")
            continue
        for fig in bench["figures"]:
            ratio = f"{fig['ratio']:.2f}{TIMES}" if fig["ratio"] is not None else DASH
            lines.append(
                f"| {bench['title']} | {fig['name']} | {_fmt(fig['value'], fig['unit'])} "
                f"| {_fmt(fig['baseline'], fig['unit'])} | {ratio} "
                f"| {fig['baseline_name'] or DASH} |"
            )
    lines += ["", "## Targets", "", "| benchmark | target | result | detail |", "|---|---|---|---|"]
    for bench in results["benchmarks"]:
        if bench["status"] != "ok":
            lines.append(f"| {bench['title']} | {DASH} | {bench['status']} | {bench['reason']} |")
        for target in bench["targets"]:
            lines.append(
                f"| {bench['title']} | {target['description']} | {_met(target['met'])} "
                f"| {target['detail']} |"
            )
    lines += [
        "",
        "## Conditions",
        "",
        "1-minute load average when each benchmark started (2 cores: above ~0.5, other work",
        "was competing for the cores and the figures are pessimistic), and its duration.",
        "",
    ]
    for bench in results["benchmarks"]:
        load = bench.get("load_average")
        lines.append(
            f"- {bench['title']}: load {load:.2f}, {bench['elapsed_s']:.0f} s"
            if load is not None
            else f"- {bench['title']}: {bench['elapsed_s']:.0f} s"
        )
    notes = [(b["title"], n) for b in results["benchmarks"] for n in b["notes"]]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {title}: {note}" for title, note in notes]
    _atomic_write(path, "\n".join(lines) + "\n")
    return path


def write_png(results: dict[str, Any], path: Path) -> Path | None:
    """latest.png: latency CDFs per benchmark and throughput vs concurrency."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    with_cdf = [b for b in results["benchmarks"] if b["status"] == "ok" and b["latency_cdf_ms"]]
    with_tput = [
        b
        for b in results["benchmarks"]
        if b["status"] == "ok" and any(len(v) > 1 for v in b["throughput"].values())
    ]
    panels = len(with_cdf) + len(with_tput)
    if panels == 0:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no latency or throughput data in this run", ha="center", va="center")
        ax.axis("off")
    else:
        cols = 2
        rows = math.ceil(panels / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(13, 4.2 * rows), squeeze=False)
        flat = [ax for row in axes for ax in row]
        index = 0
        for bench in with_cdf:
            ax = flat[index]
            index += 1
            percentiles = list(range(101))
            # Colour = concurrency, line style = variant (the first one, the baseline, dashed).
            variants: list[str] = []
            levels: list[str] = []
            for label in bench["latency_cdf_ms"]:
                variant, _, level = label.rpartition(" c=")
                variants += [variant] if variant not in variants else []
                levels += [level] if level not in levels else []
            styles = ["--", "-", ":", "-."] if len(variants) > 1 else ["-"]
            for label, cdf in bench["latency_cdf_ms"].items():
                if not cdf:
                    continue
                variant, _, level = label.rpartition(" c=")
                ax.plot(
                    [max(v, 1e-3) for v in cdf],
                    percentiles,
                    label=label,
                    linewidth=1.3,
                    color=f"C{levels.index(level) % 10}",
                    linestyle=styles[variants.index(variant) % len(styles)],
                )
            ax.set_xscale("log")
            ax.set_xlabel("latency (ms, log)")
            ax.set_ylabel("percentile")
            ax.set_title(f"{bench['title']}: latency CDF", fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6, ncol=2)
        for bench in with_tput:
            ax = flat[index]
            index += 1
            for label, series in bench["throughput"].items():
                xs = sorted(series, key=int)
                ax.plot([int(x) for x in xs], [series[x] for x in xs], marker="o", label=label)
            ax.set_xscale("log")
            ax.set_xlabel("concurrency (clients / in flight, log)")
            ax.set_ylabel("ops/s")
            ax.set_title(f"{bench['title']}: throughput", fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        for ax in flat[index:]:
            ax.axis("off")
        fig.suptitle(
            f"meshsrpc benchmarks ({results['profile']}, {results['started_at']})", fontsize=11
        )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def validate(results: dict[str, Any]) -> list[str]:
    """Problems with a latest.json document (empty when well formed)."""
    problems: list[str] = []

    def need(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if key not in obj:
            problems.append(f"{where}: missing {key!r}")
            return None
        if not isinstance(obj[key], kind):
            problems.append(f"{where}.{key}: {type(obj[key]).__name__}, expected {kind}")
            return None
        return obj[key]

    if results.get("schema") != SCHEMA:
        problems.append(f"schema is {results.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("profile", "started_at", "finished_at"):
        need(results, key, str, "results")
    need(results, "elapsed_s", (int, float), "results")
    need(results, "complete", bool, "results")
    machine = need(results, "machine", dict, "results") or {}
    for key in ("python", "cpu_model", "platform"):
        need(machine, key, str, "machine")
    versions = need(results, "versions", dict, "results") or {}
    for key in ("meshsrpc", "betterproto2", "websockets", "redis"):
        need(versions, key, str, "versions")
    number = (int, float)
    for i, bench in enumerate(need(results, "benchmarks", list, "results") or []):
        where = f"benchmarks[{i}]"
        for key in ("name", "title", "status"):
            need(bench, key, str, where)
        status = bench.get("status")
        if status not in ("ok", "not available", "error"):
            problems.append(f"{where}: status {status!r}")
        if status != "ok" and not isinstance(bench.get("reason"), str):
            problems.append(f"{where}: status {status!r} without a reason")
        figures = need(bench, "figures", list, where) or []
        targets = need(bench, "targets", list, where) or []
        if status == "ok" and not figures:
            problems.append(f"{where}: ok but no figures")
        for j, fig in enumerate(figures):
            fwhere = f"{where}.figures[{j}]"
            need(fig, "name", str, fwhere)
            need(fig, "unit", str, fwhere)
            # None: nothing completed in the window (possible in a smoke run on a busy box).
            need(fig, "value", (*number, type(None)), fwhere)
            need(fig, "params", dict, fwhere)
            need(fig, "higher_is_better", bool, fwhere)
            baseline, ratio = fig.get("baseline"), fig.get("ratio")
            if baseline is not None and not isinstance(baseline, number):
                problems.append(f"{fwhere}: baseline {baseline!r}")
            if ratio is not None and (baseline is None or fig.get("value") is None):
                problems.append(f"{fwhere}: baseline {baseline!r} but ratio {ratio!r}")
            value = fig.get("value")
            if (
                baseline
                and ratio is not None
                and value is not None
                and abs(ratio - value / baseline) > 1e-9
            ):
                problems.append(f"{fwhere}: ratio {ratio} != value / baseline")
        for j, target in enumerate(targets):
            twhere = f"{where}.targets[{j}]"
            need(target, "description", str, twhere)
            need(target, "detail", str, twhere)
            if target.get("met") not in (True, False, None):
                problems.append(f"{twhere}: met {target.get('met')!r}")
        for label, cdf in (need(bench, "latency_cdf_ms", dict, where) or {}).items():
            # Empty: no call completed in the window (a smoke run on a loaded machine).
            if cdf and (len(cdf) != 101 or any(b < a for a, b in itertools.pairwise(cdf))):
                problems.append(f"{where}: latency CDF {label!r} is not 101 rising points")
        need(bench, "throughput", dict, where)
    return problems
