"""Run wrk with the rotating-body Lua script and parse its `--latency` report."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "wrk" / "rotate.lua"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # socket errors (connect/read/write/timeout) plus non-2xx/3xx responses
    raw: str

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        del d["raw"]
        return d


class WrkError(RuntimeError):
    pass


def ensure_wrk() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk not found: apt-get install -y -qq wrk")
    return exe


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not m:
        raise ValueError(f"unparseable wrk duration {value!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse(output: str) -> WrkResult:
    """Parse wrk 4.x text output, e.g.

        Latency Distribution
           50%  180.00us
           99%    1.20ms
        123456 requests in 10.00s, 12.34MB read
          Socket errors: connect 0, read 0, write 0, timeout 3
          Non-2xx or 3xx responses: 7
        Requests/sec:  12345.67
    """
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.M)}
    done = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+),", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not (done and rps and len(pct) == 4):
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(
        requests=int(done.group(1)),
        duration_s=_ms(done.group(2) + done.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        p50_ms=pct[50], p75_ms=pct[75], p90_ms=pct[90], p99_ms=pct[99],
        errors=errors,
        raw=output,
    )


def run(url: str, path: str, bodies_file: Path, connections: int, duration: int) -> WrkResult:
    # One wrk thread per connection up to the 2 cores: more threads than cores only adds
    # contention with the servers, which share the same machine.
    threads = min(connections, 2)
    argv = [ensure_wrk(), "--latency", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
            "--timeout", "10s", "-s", str(LUA), url, "--", str(bodies_file), path]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise WrkError(f"wrk failed ({out.returncode}): {out.stderr}\n{out.stdout}")
    return parse(out.stdout)
