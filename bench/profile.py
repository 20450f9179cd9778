#!/usr/bin/env python3
"""Where does our server spend its time under load? py-spy on one worker while wrk drives it.

    pip install py-spy
    python bench/profile.py                       # single evaluation, c=32, 10 s
    python bench/profile.py --scenario batch --native

Starts `arop serve` (2 workers) like run.py does, loads it with wrk, records one worker with
`py-spy record --format raw` (collapsed stacks) and prints the functions with the most
samples, by self time and by inclusive time, plus a breakdown by component. The raw stacks
are kept (path printed) for flame-graph tools (inferno, speedscope, flamegraph.pl).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import scenario
import servers
import wrk_runner
from run import write_bodies

# Where a frame's file lives says which component the time belongs to.
COMPONENTS = [
    ("cedarpy (Rust, via _internal)", ("cedarpy",)),
    ("prometheus_client (metrics)", ("prometheus_client",)),
    ("msgspec", ("msgspec",)),
    ("litestar (routing, ASGI)", ("litestar",)),
    ("uvicorn/httptools (HTTP)", ("uvicorn", "httptools")),
    ("asyncio/uvloop (event loop)", ("asyncio", "uvloop")),
    ("profiles/ (AuthZEN model)", ("profiles/",)),
    ("services/ (our server)", ("services/",)),
]


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks.append((stack.split(";"), int(count)))
    return stacks


def component(frame: str) -> str | None:
    for name, needles in COMPONENTS:
        if any(n in frame for n in needles):
            return name
    return None


def report(all_stacks: list[tuple[list[str], int]], top: int) -> str:
    # Only the event-loop thread serves requests. py-spy also reports a few samples of
    # background threads (aiosqlite's, uvicorn's supervisor pipe) that would dilute the shares.
    stacks = [(f, c) for f, c in all_stacks if any("asyncio/runners.py" in x for x in f)] or all_stacks
    total = sum(c for _, c in stacks) or 1
    others = sum(c for _, c in all_stacks) - sum(c for _, c in stacks)
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    comp: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        self_t[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
        # Self time of the innermost frame that belongs to a known component: native frames
        # without a file (when --native is off the leaf is the Python caller) count as "other".
        leaf = next((c for c in map(component, reversed(frames)) if c), "other")
        comp[leaf] += count
    lines = [f"{total} samples of the event-loop thread ({others} of other threads left out)"]
    lines.append("\nby component (innermost known frame):")
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in comp.most_common()]
    lines.append(f"\ntop {top} by self time:")
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_t.most_common(top)]
    lines.append(f"\ntop {top} by inclusive time:")
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["single", "batch"], default="single")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=int, default=10, help="seconds of py-spy recording")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--native", action="store_true", help="also sample native (Rust/C) frames")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    pyspy = shutil.which("py-spy")
    if not pyspy:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    sc = next(s for s in scenario.build() if s.name == args.scenario)
    work = Path(tempfile.mkdtemp(prefix="arop-profile-"))
    bodies = write_bodies(work, "arop", sc)
    srv = servers.arop_server(servers.free_port(), args.workers)
    try:
        srv.start()
        wrk_runner.run(srv.base_url, sc.arop_path, bodies, 8, 2)  # warm-up
        # Load for longer than we record so that py-spy only ever sees a saturated worker.
        load = threading.Thread(target=wrk_runner.run, args=(
            srv.base_url, sc.arop_path, bodies, args.concurrency, args.duration + 4))
        load.start()
        threading.Event().wait(2)
        worker = srv.worker_pids()[-1]
        raw = work / "profile.txt"
        base = [pyspy, "record", "--pid", str(worker), "-d", str(args.duration), "-r", "200"]
        base += ["--native"] if args.native else []
        subprocess.run([*base, "--format", "raw", "-o", str(raw)], check=True, capture_output=True)
        load.join()
        print(f"{args.scenario}, c={args.concurrency}, worker pid {worker}, raw stacks: {raw}\n")
        print(report(parse_raw(raw), args.top))
        return 0
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
