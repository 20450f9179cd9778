#!/usr/bin/env python3
"""Side-by-side load benchmark: our AuthZEN PDP (arop) against Cerbos on the Todo scenario.

    python bench/run.py                  # 10 s per run, c = 1, 8, 32, 64
    python bench/run.py --short          # CI smoke: 2 s, c = 1 and 32

Starts both servers on free 127.0.0.1 ports, checks that every benchmark body gets the
expected decisions from both (aborts otherwise), warms each up, then drives them in turn
with wrk and prints req/s, decisions/s, p50/p99 and peak RSS with the arop/Cerbos ratios.
Results go to bench/results/<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cpu
import scenario
import servers
import wrk_runner
from scenario import Body, Scenario
from servers import RssSampler, Server, ServerError

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_S = 2
WARMUP_CONNECTIONS = 8
TARGET_C = 32  # the concurrency at which the targets are judged
NOISE_LIMIT = 0.10  # share of the machine's CPU used by other processes that makes a run suspect


class DecisionMismatch(RuntimeError):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    p.add_argument("--short", action="store_true", help="CI smoke: 2 s runs at c=1 and 32 only")
    p.add_argument("--workers", type=int, default=2, help="worker processes of our server (default 2)")
    p.add_argument("--only", choices=["arop", "cerbos"], help="benchmark one server only")
    p.add_argument("--concurrency", default=None, help="comma-separated connection counts (default 1,8,32,64)")
    p.add_argument("--scenario", choices=["single", "batch"], help="run one scenario only")
    p.add_argument("--retries", type=int, default=2,
                   help="re-measure a point up to N times when other work disturbed it (default 2)")
    p.add_argument("--vectors", type=Path, default=scenario.DEFAULT_VECTORS,
                   help="folder with users.json and the -02 decision vectors")
    args = p.parse_args(argv)
    if args.short:
        args.duration = 2
        args.concurrency = args.concurrency or "1,32"
    args.concurrency = [int(c) for c in (args.concurrency or "1,8,32,64").split(",")]
    return args


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # an error answer to a valid question is a wrong answer
        raise DecisionMismatch(
            f"POST {url} -> HTTP {e.code}: {e.read()[:500]!r}\nbody: {json.dumps(body)[:500]}") from e
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        raise ServerError(f"POST {url} failed: {e}") from e


def server_body(name: str, body: Body) -> dict[str, Any]:
    return body.arop if name == "arop" else body.cerbos


def server_path(name: str, sc: Scenario) -> str:
    return sc.arop_path if name == "arop" else sc.cerbos_path


def check_decisions(running: dict[str, Server], scenarios: list[Scenario]) -> None:
    """Ask every benchmark question once and compare with the vectors' (or oracle's) answer.

    A throughput figure is worthless if the servers do not answer the same thing, so any
    disagreement aborts the run before loading.
    """
    problems = []
    for sc in scenarios:
        for i, body in enumerate(sc.bodies):
            for name, srv in running.items():
                resp = post_json(srv.base_url + server_path(name, sc), server_body(name, body))
                try:
                    got = (scenario.arop_decisions(sc, resp) if name == "arop"
                           else scenario.cerbos_decisions(body, resp))
                except (KeyError, TypeError, ValueError) as e:
                    problems.append(f"{name} {sc.name}[{i}]: malformed response {resp!r} ({e})")
                    continue
                if got != body.expected:
                    wrong = [k for k, (g, e) in enumerate(zip(got, body.expected, strict=False)) if g != e]
                    problems.append(f"{name} {sc.name}[{i}]: {len(got)} decisions for {len(body.expected)} items, "
                                    f"{len(wrong)} wrong, first at item {wrong[0] if wrong else '-'}; "
                                    f"body {json.dumps(server_body(name, body))[:300]}")
        print(f"decision check: {sc.name}: {len(sc.bodies)} bodies x {sc.items} decision(s) "
              f"x {len(running)} server(s) {'OK' if not problems else 'FAILED'}")
    if problems:
        raise DecisionMismatch("decisions disagree with the expected values:\n  " + "\n  ".join(problems))


def write_bodies(workdir: Path, name: str, sc: Scenario) -> Path:
    path = workdir / f"{name}-{sc.name}.jsonl"
    path.write_text("".join(json.dumps(server_body(name, b), separators=(",", ":")) + "\n" for b in sc.bodies))
    return path


def machine() -> dict[str, Any]:
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": model, "mem_total_mib": mem_kib // 1024,
            "kernel": platform.release(), "python": platform.python_version()}


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def fmt_ratio(r: float | None) -> str:
    return f"{r:.2f}x" if r is not None else "-"


def print_header(sc: Scenario, names: list[str]) -> None:
    per = "req/s  dec/s    p50ms   p99ms  RSS MiB noise"
    print(f"\n== {sc.name}: {sc.items} decision(s) per request ==")
    print(f"{'c':>3} | " + " | ".join(f"{n:<6} {per}" for n in names)
          + (" | arop/cerbos: dec/s  p99" if len(names) == 2 else ""))


def print_row(c: int, rows: dict[str, dict[str, Any]]) -> None:
    cells = [f"{'':6} {r['rps']:>6.0f} {r['decisions_per_s']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}"
             f" {r['peak_rss_mib']:>7.1f} {r['noise']:>4.0%}{'!' if r['noise'] > NOISE_LIMIT else ' '}"
             for r in rows.values()]
    line = f"{c:>3} | " + " | ".join(cells)
    if len(rows) == 2:
        a, b = rows["arop"], rows["cerbos"]
        line += (f" | {fmt_ratio(ratio(a['decisions_per_s'], b['decisions_per_s'])):>17}"
                 f" {fmt_ratio(ratio(a['p99_ms'], b['p99_ms'])):>5}")
    print(line, flush=True)


def judge_targets(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets of docs/performance.md, judged at c=TARGET_C (a target is left out when
    its runs were not made, e.g. with --only or without c=32)."""
    def row(sc: str, name: str) -> dict[str, Any] | None:
        return next((r for r in results if r["scenario"] == sc and r["server"] == name
                     and r["concurrency"] == TARGET_C), None)

    out: dict[str, Any] = {}
    a, b = row("single", "arop"), row("single", "cerbos")
    if a and b:
        out["single_throughput_2x"] = {"ratio": ratio(a["rps"], b["rps"]), "met": a["rps"] >= 2 * b["rps"]}
        out["single_p99_not_worse"] = {"arop_ms": a["p99_ms"], "cerbos_ms": b["p99_ms"],
                                       "met": a["p99_ms"] <= b["p99_ms"]}
    a, b = row("batch", "arop"), row("batch", "cerbos")
    if a and b:
        out["batch_decisions_3x"] = {"ratio": ratio(a["decisions_per_s"], b["decisions_per_s"]),
                                     "met": a["decisions_per_s"] >= 3 * b["decisions_per_s"]}
    arop_rss = [r["peak_rss_mib"] for r in results if r["server"] == "arop"]
    if arop_rss:
        out["rss_under_150mib"] = {"peak_rss_mib": max(arop_rss), "met": max(arop_rss) < 150}
    return out


def print_targets(targets: dict[str, Any]) -> None:
    if not targets:
        return
    print(f"\n== targets (at c={TARGET_C}) ==")
    for name, t in targets.items():
        detail = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in t.items() if k != "met")
        print(f"  {'MET   ' if t['met'] else 'MISSED'} {name} ({detail})")


def measure_once(name: str, srv: Server, sc: Scenario, bodies: Path, c: int, duration: int) -> dict[str, Any]:
    with RssSampler(srv) as rss, cpu.Account(srv.pids) as acct:
        try:
            res = wrk_runner.run(srv.base_url, server_path(name, sc), bodies, c, duration)
        finally:
            srv.check_alive()  # a crash under load is the server's failure, not wrk's
    if res.errors:
        print(f"warning: {name} {sc.name} c={c}: {res.errors} errors/non-2xx responses", file=sys.stderr)
    return {"scenario": sc.name, "server": name, "concurrency": c, "threads": min(c, 2),
            **res.as_dict(), "decisions_per_s": res.rps * sc.items,
            "peak_rss_mib": rss.peak_rss_kib / 1024, "peak_pss_mib": rss.peak_pss_kib / 1024,
            "cpu_server": acct.server_share, "cpu_wrk": acct.wrk_share,
            "cpu_foreign": acct.foreign_share, "cpu_steal": acct.steal_share,
            # Steal is left out of "noise": on this VM it rises whenever vCPUs idle and wake
            # (38% at c=1 on an otherwise idle machine), so it says nothing about other work.
            "noise": acct.foreign_share}


def measure(name: str, srv: Server, sc: Scenario, bodies: Path, c: int, duration: int,
            retries: int) -> dict[str, Any]:
    """One point; re-measured (up to `retries` times) when other work disturbed it.

    On a shared machine other processes come and go; the run with the least disturbance is
    kept, and flagged with "!" in the table if even that one is above NOISE_LIMIT.
    """
    runs = [measure_once(name, srv, sc, bodies, c, duration)]
    while runs[-1]["noise"] > NOISE_LIMIT and len(runs) <= retries:
        print(f"  ({name} {sc.name} c={c}: {runs[-1]['noise']:.0%} of the CPU went to other processes, "
              f"measuring again)", flush=True)
        runs.append(measure_once(name, srv, sc, bodies, c, duration))
    best = min(runs, key=lambda r: r["noise"])
    best["attempts"] = len(runs)
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)  # memory: worst case seen
    best["peak_pss_mib"] = max(r["peak_pss_mib"] for r in runs)
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk_runner.ensure_wrk()
    try:
        scenarios = [s for s in scenario.build(args.vectors) if args.scenario in (None, s.name)]
    except (OSError, scenario.OracleError) as e:
        print(f"FAILED: cannot build the benchmark bodies: {e}", file=sys.stderr)
        return 3
    names = [n for n in ("arop", "cerbos") if args.only in (None, n)]
    running: dict[str, Server] = {}
    workdir = Path(tempfile.mkdtemp(prefix="arop-bench-bodies-"))
    results: list[dict[str, Any]] = []
    errors = 0
    try:
        for name in names:
            srv = (servers.arop_server(servers.free_port(), args.workers) if name == "arop"
                   else servers.cerbos_server(servers.free_port(), servers.free_port()))
            running[name] = srv  # registered before start so that finally stops it
            srv.start()
            print(f"{name}: up on {srv.base_url} (pids {srv.pids()}, cwd {srv.cwd})")
        check_decisions(running, scenarios)
        # Both servers and wrk need the whole machine; anything else running skews the
        # comparison (mostly the tails), so say so loudly and record it in the results.
        busy = cpu.cpu_busy()
        if busy > 0.10:
            print(f"WARNING: the machine is {busy:.0%} busy before loading: results will be noisy",
                  file=sys.stderr)

        print(f"\nwrk --latency, {args.duration} s per run, threads = min(c, 2); "
              f"arop workers = {args.workers}; Cerbos GOMAXPROCS = nproc = {os.cpu_count()}")
        for sc in scenarios:
            bodies = {n: write_bodies(workdir, n, sc) for n in running}
            for name, srv in running.items():  # warm-up: fill caches, allocator arenas, Go GC pacing
                wrk_runner.run(srv.base_url, server_path(name, sc), bodies[name], WARMUP_CONNECTIONS, WARMUP_S)
                srv.check_alive()
            print_header(sc, list(running))
            for c in args.concurrency:
                # Alternate servers per concurrency so that drift (thermal, noisy neighbours)
                # hits both sides alike.
                rows = {n: measure(n, srv, sc, bodies[n], c, args.duration, args.retries)
                        for n, srv in running.items()}
                errors += sum(r["errors"] for r in rows.values())
                results.extend(rows.values())
                print_row(c, rows)

        targets = judge_targets(results)
        print_targets(targets)
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(json.dumps({
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
            "machine": {**machine(), "cpu_busy_before": round(busy, 3)},
            "settings": {"duration_s": args.duration, "concurrency": args.concurrency,
                         "arop_workers": args.workers, "cerbos_version": servers.CERBOS_VERSION,
                         "warmup_s": WARMUP_S, "batch_size": scenario.BATCH_SIZE,
                         "noise_limit": NOISE_LIMIT, "retries": args.retries},
            "results": results,
            "targets": targets,
        }, indent=2))
        print(f"\nresults: {out}")
        if errors:
            print(f"FAILED: {errors} socket errors or non-2xx responses under load", file=sys.stderr)
            return 4
        return 0
    except ServerError as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 2
    except DecisionMismatch as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 3
    except wrk_runner.WrkError as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 4
    finally:
        for srv in running.values():
            srv.stop()


if __name__ == "__main__":
    sys.exit(main())
