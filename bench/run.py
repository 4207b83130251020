"""The bench suite: every benchmark, one table (Markdown, as in the README).

    python bench/run.py [--quick]

Runs, in order: webhook acknowledgement vs a bare ASGI hello-world (``ack.py``), delivery of
a 200-message latency mix with WeChat's real timing (``delivery.py``), memory per pending
answer and per stored conversation (``memory.py``), and answer-page first byte while answers
stream (``page.py``). About 5 minutes on a 2-core machine; ``--quick`` runs each smaller, to
check the suite itself. Each part also runs alone (``python bench/delivery.py``, …).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import delivery
import memory
import page
from common import Row


async def ack_rows(
    messages: int, in_flight: int, rate: float, paced: int, rounds: int
) -> list[Row]:
    """``ack.py``'s push-mode acknowledgement against a bare hello-world, as table rows."""
    try:
        import ack  # issue 3's push-mode acknowledgement bench, reused as it is
    except ImportError as exc:
        return [Row("webhook ack", "not run", "-", f"bench/ack.py cannot be imported: {exc}")]
    load = ack.Load(messages, in_flight, rate, paced, rounds)
    report = await ack.run("sqlite", load)
    bare, gateway = report.pooled("bare"), report.pooled("gateway")
    bare_paced, gateway_paced = report.bare_paced, report.gateway_paced
    bench = "webhook ack (push mode, SQLite)"
    failures = gateway.failures + gateway_paced.failures
    per_answer = report.cpu_per_answer_us
    return [
        Row(bench, f"bare ASGI hello-world, {in_flight} in flight",
            f"{report.median_throughput('bare'):.0f} msg/s",
            f"median of {rounds} runs; p50 {bare.ms(50):.1f} ms, p99 {bare.ms(99):.1f} ms"),
        Row(bench, f"chatgate, {in_flight} in flight",
            f"{report.median_throughput('gateway'):.0f} msg/s",
            f"median of {rounds} runs; p50 {gateway.ms(50):.1f} ms, p99 {gateway.ms(99):.1f} ms, "
            f"failures {failures}"),
        Row(bench, "throughput ratio (chatgate / bare)", f"{report.ratio:.2f}",
            f"median of the rounds' ({report.round_ratios}); target >= 0.5"),
        Row(bench, "server CPU per message, saturated", ack.cpu_line(gateway),
            f"bare {ack.cpu_line(bare)}; busy below 1: the client set the pace"),
        Row(bench, f"ack latency at {rate:g} msg/s p50", f"{gateway_paced.ms(50):.1f} ms",
            f"bare {bare_paced.ms(50):.1f} ms"),
        Row(bench, f"ack latency at {rate:g} msg/s p99", f"{gateway_paced.ms(99):.1f} ms",
            f"bare {bare_paced.ms(99):.1f} ms"),
        Row(bench, "answers pushed while their run lasted",
            f"{report.pushed_during} of {gateway.messages}",
            f"acks first; the last of a run at most "
            f"{report.pushed_after:.1f} s after its last ack"),
        Row(bench, "CPU per message, its answer pushed",
            "n/a" if per_answer is None else f"{per_answer:.0f} µs",
            "ack, fake model, typing and push, saturated runs"),
    ]  # fmt: skip


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def table(rows: list[Row]) -> str:
    out = ["| Benchmark | Figure | Value | Notes |", "|---|---|---|---|"]
    last = None
    for row in rows:
        bench = row.bench if row.bench != last else ""
        last = row.bench
        out.append(f"| {bench} | {row.figure} | {row.value} | {row.note} |")
    return "\n".join(out)


async def suite(quick: bool) -> list[Row]:
    ack_load = (300, 50, 50.0, 100, 2) if quick else (2000, 200, 100.0, 400, 3)
    parts: list[tuple[str, Callable[[], Awaitable[list[Row]]]]] = [
        ("ack", lambda: ack_rows(*ack_load)),
        ("delivery", lambda: delivery.measure(20 if quick else 200, 10 if quick else 50)),
        ("memory", lambda: memory.measure(200 if quick else 2000, 1000 if quick else 10_000)),
        ("page", lambda: page.measure(5 if quick else 20, 2 if quick else 5)),
    ]
    rows: list[Row] = []
    for name, part in parts:
        started = time.perf_counter()
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows += await part()
        print(f"  {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, to check the suite")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = asyncio.run(suite(args.quick))
    took = time.perf_counter() - started
    print(f"chatgate bench, {datetime.date.today().isoformat()}, {machine()}")
    print(f"suite run time {took / 60:.1f} min{' (quick)' if args.quick else ''}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
