"""Helpers shared by the benchmarks: percentiles, a plain-text table printer, a free loopback port."""
from __future__ import annotations

import math
import os
import platform
import socket
import statistics
import sys
from typing import Iterable, Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (0-100) by linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(latencies_s: Sequence[float]) -> dict:
    """p50/p95/p99/mean/max in milliseconds of latencies given in seconds."""
    ms = [v * 1000.0 for v in latencies_s]
    return {"n": len(ms), "p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
            "mean": statistics.fmean(ms) if ms else float("nan"), "max": max(ms) if ms else float("nan")}


def _cell(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence], *, title: str | None = None) -> str:
    """A GitHub-markdown table (readable as plain text too); numbers right-aligned."""
    rows = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in rows) if rows else False for i in range(len(headers))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    out = []
    if title:
        out.append(title)
        out.append("")
    out.append(line(headers))
    out.append("|" + "|".join(("-" * (w + 1) + ":") if numeric[i] else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("x%"))
        return True
    except ValueError:
        return text == "-"


def print_table(headers: Sequence[str], rows: Iterable[Sequence], *, title: str | None = None) -> None:
    print(table(headers, rows, title=title), flush=True)
    print(flush=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on the loopback interface right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (sockets held open together so the OS cannot hand out one twice)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def machine() -> str:
    """One line describing where the figures came from."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    return (f"{platform.system()} {platform.release()} {platform.machine()}, {cpus} usable cores (nproc), "
            f"Python {sys.version.split()[0]}")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
