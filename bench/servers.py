"""Start, watch and stop the two servers under test (our PDP and Cerbos).

Each server runs in its own temporary cwd (our server's embedded SQLite store lands
there) with its output in a log file there, bound to a free 127.0.0.1 port. Stopping is
by PID only: SIGTERM to the process we spawned, then SIGKILL to whatever is left of its
process tree (uvicorn workers) after a grace period.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CERBOS_BIN = BENCH / ".cache/cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"
CERBOS_VERSION = "0.55.0"


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (tiny race until the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(root: int) -> list[int]:
    """PIDs of root and all its descendants, from the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited while we looked
        # comm (field 2) may contain spaces; fields after the last ')' are fixed.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    health_path: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="arop-bench-")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.cwd / "server.log"

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, **self.env}
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} did not start: exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + self.health_path, timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise ServerError(f"{self.name} did not start: not healthy after {timeout:.0f} s\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(f"{self.name} died (exit {self.proc.returncode})\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        tree = process_tree(self.proc.pid)  # before the master reaps its workers
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        for pid in tree:  # anything still alive of what we started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the master's children except multiprocessing's
        resource tracker (uvicorn workers), or the master itself when it has no workers."""
        def cmdline(pid: int) -> bytes:
            try:
                return Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return b""
        tree = self.pids()
        workers = [p for p in tree[1:] if b"resource_tracker" not in cmdline(p)]
        return sorted(workers) or tree[:1]


def arop_server(port: int, workers: int) -> Server:
    # Prefer the `arop` console script of `pip install -e .`; fall back to the module so
    # that the bench also runs from a plain checkout (PYTHONPATH points at the repo).
    exe = shutil.which("arop", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    base = [exe] if exe else [sys.executable, "-m", "services.cli"]
    srv = Server("arop", [*base, "serve", "--host", "127.0.0.1", "--port", str(port),
                          "--workers", str(workers)], port, "/healthz")
    srv.env = {
        "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}".rstrip(":"),
        # Keep the embedded store in the server's own temp cwd, never in the repo.
        "AROP_STORE__URL": f"sqlite:///{srv.cwd}/arop.db",
    }
    return srv


def cerbos_server(http_port: int, grpc_port: int) -> Server:
    if not CERBOS_BIN.exists():
        raise ServerError(
            f"Cerbos binary missing at {CERBOS_BIN}\n"
            f"install it: npm install --prefix bench/.cache/cerbos @cerbos/cerbos-linux-x64@{CERBOS_VERSION}")
    argv = [
        str(CERBOS_BIN), "server", f"--config={BENCH / 'cerbos/config.yaml'}",
        # Cerbos logs two lines per request at info level; our server does not log each
        # request either, so both run without per-request logs (this favours Cerbos if anything).
        "--log-level=warn",
        f"--set=server.httpListenAddr=127.0.0.1:{http_port}",
        f"--set=server.grpcListenAddr=127.0.0.1:{grpc_port}",
        f"--set=storage.disk.directory={BENCH / 'cerbos/policies'}",
    ]
    return Server("cerbos", argv, http_port, "/_cerbos/health", env={"CERBOS_NO_TELEMETRY": "1"})


class RssSampler:
    """Peak memory of a server's whole process tree, sampled every 100 ms in a thread.

    `peak_rss_kib` sums VmRSS over master and workers (the target's definition; it counts
    pages shared after fork once per process). `peak_pss_kib` sums PSS, which splits shared
    pages between the processes and is the truer footprint of a forking server.
    """

    def __init__(self, server: Server, interval: float = 0.1) -> None:
        self.server = server
        self.interval = interval
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = self.server.pids()
            self.peak_rss_kib = max(self.peak_rss_kib, sum(_status_kib(p, "VmRSS:") for p in pids))
            self.peak_pss_kib = max(self.peak_pss_kib, sum(_pss_kib(p) for p in pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
