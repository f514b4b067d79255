"""Shared helpers for the benchmark scripts: machine description, timing, summaries, output files.

Standard library only, so that a script running in a separate environment
(bench_peer.py runs in the dlib peer's venv, without torch or dcal) can use it.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# CPU flags that decide which kernels torch and dlib can use (bf16 speed, SIMD width).
_REPORTED_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform.processor() elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """Return the subset of :data:`_REPORTED_CPU_FLAGS` that this CPU has (Linux only)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in _REPORTED_CPU_FLAGS if flag in present]
    except OSError:
        pass
    return []


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Return the installed version of each distribution name, or "not installed"."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe_machine(packages: Sequence[str], **settings) -> dict:
    """Describe the host, the Python environment and the benchmark settings.

    ``settings`` (threads, batch size, dtype, ...) are stored as given. The
    load average is included because these benchmarks often share the machine
    with other jobs, which moves absolute times but much less the ratios.
    """
    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS
        usable_cores = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": package_versions(packages),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
    }


def format_machine(machine: dict) -> str:
    """Format :func:`describe_machine`'s result as a few markdown lines."""
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    settings = ", ".join(f"{key}={value}" for key, value in machine["settings"].items())
    return (
        f"- CPU: {machine['cpu']} ({machine['usable_cores']} usable of {machine['logical_cores']} "
        f"logical cores; flags: {' '.join(machine['cpu_flags']) or 'none of the reported ones'})\n"
        f"- load average at start (1, 5, 15 min): {machine['load_average_1_5_15']}\n"
        f"- Python {machine['python']}, {packages}\n"
        f"- settings: {settings}"
    )


def interleaved_timings(candidates: Mapping[str, Callable[[], object]], warmup: int, repeats: int,
                        sync: Callable[[], None] | None = None) -> dict[str, dict[str, list[float]]]:
    """Time each candidate ``repeats`` times, interleaved, after ``warmup`` untimed rounds.

    Each round runs every candidate once (A B C, then B C A, ...). Interleaving
    means a change in machine load hits all candidates alike, so the per-round
    ratios from :func:`paired_ratios` stay meaningful on a shared machine.
    Rotating the start of each round keeps any one candidate from always
    running first, straight after the previous round's last one.

    Args:
        candidates: name -> function that runs one iteration.
        warmup: untimed rounds before the timed ones.
        repeats: timed rounds.
        sync: called before starting and before stopping the clocks, for
            example ``torch.cuda.synchronize`` when timing GPU work.

    Returns:
        {"wall": name -> seconds, "cpu": name -> seconds}, each a list of
        ``repeats`` durations in round order. "cpu" is the CPU time of the
        whole process (all its threads), see :func:`time_call`.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    timings = {"wall": {name: [] for name in names}, "cpu": {name: [] for name in names}}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = time_call(candidates[name], sync)
            timings["wall"][name].append(wall)
            timings["cpu"][name].append(cpu)
    return timings


def time_call(function: Callable[[], object], sync: Callable[[], None] | None = None) -> tuple[float, float]:
    """Return the wall-clock seconds and the process CPU seconds that one call of ``function`` takes.

    CPU time sums every thread of the process. It moves less than wall time
    when other jobs take the cores, but it also counts the time that worker
    threads spend spinning while they wait for each other.
    """
    if sync is not None:
        sync()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    function()
    if sync is not None:
        sync()
    return time.perf_counter() - wall_start, time.process_time() - cpu_start


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Return the median, quartiles, IQR, min, max and count of ``samples``."""
    if not samples:
        raise ValueError("summarize needs at least one sample")
    values = sorted(samples)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "min": values[0],
        "max": values[-1],
        "n": len(values),
    }


def paired_ratios(timings: Mapping[str, Sequence[float]], numerator: str, denominator: str) -> list[float]:
    """Return the per-round ratios numerator / denominator of one clock's timings (name -> seconds)."""
    return [a / b for a, b in zip(timings[numerator], timings[denominator], strict=True)]


def format_median_iqr(stats: Mapping[str, float], digits: int = 3, scale: float = 1.0) -> str:
    """Format a :func:`summarize` result as "median (IQR x)", each value multiplied by ``scale``."""
    return f"{stats['median'] * scale:.{digits}f} (IQR {stats['iqr'] * scale:.{digits}f})"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render a GitHub markdown table; cells are converted with ``str``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def default_output(script: str, quick: bool) -> Path:
    """Return results/<script>.json, or results/<script>-quick.json for a quick run.

    Quick runs get their own file so that a smoke test does not overwrite the
    recorded full measurement.
    """
    return RESULTS_DIR / (f"{script}-quick.json" if quick else f"{script}.json")


def write_json(path: Path, payload: Mapping) -> None:
    """Write ``payload`` as indented JSON, creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=False)
        f.write("\n")


def write_csv(path: Path, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write a table as CSV, creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows(rows)
