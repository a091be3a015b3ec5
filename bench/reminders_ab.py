"""``python -m bench.reminders_ab BASE_TREE [--pairs N] [--gateway-ms MS] [--count N]``:
the reminder bench (``bench.reminders``) run in paired, interleaved turns on an untouched
tree (``BASE_TREE``, e.g. ``git -C /work/main archive main | tar -x -C /tmp/base``) and on
this one, reporting medians.

Besides the bench's own figures (wall time: launch -> last message, which includes the load
of anything else on the machine), it reports CPU times, much less sensitive to other load:
each scheduler process's (user + system, and the system part), read from ``/proc/<pid>/stat``
just before the bench stops it (after the last message and the bench's 1 s wait for
duplicates, so the start-up and the license recheck are in it); the bench process's between
the launch and that moment (its sinks: aiosmtpd and the HTTP gateway); and the PostgreSQL
backends connected to the scratch database then. Linux only. The bench's counting is
unchanged: each turn imports ``bench.reminders`` from its own tree and only wraps its
``_launch`` and ``_stop``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_TURN = r"""
import json, os, sys
from bench import reminders

ticks = os.sysconf("SC_CLK_TCK")
cpu = []
sinks = []
stop, launch = reminders._stop, reminders._launch

system = []

def _cpu(pid="self"):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        system.append(int(fields[12]) / ticks)
        return (int(fields[11]) + int(fields[12])) / ticks
    except OSError:
        return float("nan")

urls = []
backends = []
kernel = []

def _launch(url, *args, **kwargs):
    if not sinks:
        sinks.append(_cpu())
        urls.append(url)
    return launch(url, *args, **kwargs)

def _backends_cpu():
    from sqlalchemy import text
    engine = reminders.make_engine(urls[0])
    with engine.connect() as connection:
        pids = connection.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")).scalars().all()
    engine.dispose()
    return sum(_cpu(pid) for pid in pids)

def _stop(process):
    if len(sinks) == 1:
        sinks.append(_cpu())
        try:
            backends.append(_backends_cpu())
        except Exception:
            backends.append(float("nan"))
    cpu.append(_cpu(process.pid))
    kernel.append(system[-1])
    stop(process)

reminders._stop, reminders._launch = _stop, _launch
count, gateway = int(sys.argv[1]), float(sys.argv[2])
result = reminders.run(count=count, gateway_delay=gateway)
print(json.dumps({"wall": result.wall, "drain": result.drain, "duplicates": result.duplicates,
                  "missing": result.missing, "late": result.a_lease_late, "cpu": cpu,
                  "sinks": sinks[1] - sinks[0], "backends": backends[0],
                  "system": kernel,
                  "shares": result.shares}))
"""


def turn(tree: Path, count: int, gateway: float) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", _TURN, str(count), str(gateway)], cwd=tree,
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--gateway-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    trees = {"base": args.base.resolve(), "this": ROOT}
    runs: dict[str, list[dict[str, object]]] = {"base": [], "this": []}
    for n in range(args.pairs):
        order = ["base", "this"] if n % 2 == 0 else ["this", "base"]
        for name in order:
            r = turn(trees[name], args.count, args.gateway_ms / 1000)
            runs[name].append(r)
            cpu = r["cpu"]
            print(f"pair {n + 1} {name}: wall {r['wall']:.2f} s, first->last {r['drain']:.2f} s,"
                  f" cpu {' + '.join(f'{c:.2f}' for c in cpu)} = {sum(cpu):.2f} s"
                  f" (system {sum(r['system']):.2f} s), "
                  f"bench (sinks) cpu {r['sinks']:.2f} s, "
                  f"their PostgreSQL backends' cpu {r['backends']:.2f} s, "
                  f"dup {r['duplicates']}, missing {r['missing']}, lease-late {r['late']}, "
                  f"shares {r['shares']}", flush=True)
    for name in ("base", "this"):
        rs = runs[name]
        print(f"median {name}: wall {statistics.median(r['wall'] for r in rs):.2f} s, "
              f"first->last {statistics.median(r['drain'] for r in rs):.2f} s, "
              f"scheduler cpu {statistics.median(sum(r['cpu']) for r in rs):.2f} s, "
              f"bench (sinks) cpu {statistics.median(r['sinks'] for r in rs):.2f} s, "
              f"backends cpu {statistics.median(r['backends'] for r in rs):.2f} s, "
              f"duplicates {sum(r['duplicates'] for r in rs)}, "
              f"missing {sum(r['missing'] for r in rs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
