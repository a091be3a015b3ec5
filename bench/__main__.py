"""``python -m bench``: the benchmarks one after the other, then a summary.

Each benchmark's own report is printed as soon as it is done; a failing benchmark is
reported and the others still run (the exit status is then 1). At the end, the figures of
the performance issue's table (slot engine and search, history, booking writes and their
statements, reads, reminders), each against its floor measured in the same run.

``BENCH_QUICK=1 make bench``: only the benchmarks of that table, with fewer requests (the
slot search and writes); the reminders keep their 10,000 messages.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import (
    connected,
    faults,
    harness,
    operations,
    outbox_kill,
    race,
    reminders,
    slots,
    waitlist,
    writes,
)

BENCHMARKS: list[tuple[str, Callable[[], Any]]] = [
    ("slots", slots.run),
    ("race", race.run),
    ("writes", writes.run),
    ("reminders", reminders.run),
    ("reminders_40ms", lambda: reminders.run(gateway_delay=reminders.GATEWAY_DELAY)),
    ("faults", faults.run),
    ("outbox_kill", outbox_kill.run),
    ("waitlist", waitlist.run),
    ("connected", connected.run),
    ("operations", operations.run),
]


# The benchmarks whose figures make the performance issue's table.
TABLE = ("slots", "writes", "reminders", "reminders_40ms")


def main() -> int:
    harness.exit_on_sigterm()
    started = time.perf_counter()
    summary: list[str] = []
    table: list[str] = []
    failed = False
    chosen = [(n, r) for n, r in BENCHMARKS if n in TABLE] if harness.QUICK else BENCHMARKS
    for name, run in chosen:
        began = time.perf_counter()
        try:
            result = run()
        except Exception:  # noqa: BLE001 - report it, run the others
            failed = True
            print(f"== {name}: FAILED ==\n{traceback.format_exc()}", flush=True)
            summary.append(f"{name:<6} FAILED (see above)")
            if name in TABLE:
                table.append(f"{name:<6} FAILED (see above)")
            continue
        print(result.report(), flush=True)
        print(f"  ({name}: {time.perf_counter() - began:.0f} s)\n", flush=True)
        summary += result.summarize()
        if name in TABLE:
            table += result.summarize()
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"== Summary ({time.perf_counter() - started:.0f} s; figures, not assertions; "
          f"{os.cpu_count()} CPUs, load average now {load}) ==")
    print("\n".join(f"  {line}" for line in summary))
    print("== The performance table (ratios against floors started in this run"
          f"{'; BENCH_QUICK' if harness.QUICK else ''}) ==")
    print("\n".join(f"  {line}" for line in table))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
