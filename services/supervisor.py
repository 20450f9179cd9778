"""Run the HTTP server in worker processes sharing one listening socket.

The supervisor binds the socket, starts `server.workers` worker processes that inherit it, and
restarts a worker that dies. It imports neither the web framework nor Cedar, so it stays small
(the memory target in docs/performance.md counts every process). Cedar's bindings hold the GIL,
so the service scales with processes, not threads.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

log = logging.getLogger("arop.supervisor")
RESTART_BACKOFF_SECONDS = (0.5, 1, 2, 5, 10)
STOP_TIMEOUT_SECONDS = 15


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host.strip("[]"), port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


def run_worker(fd: int | None = None, host: str = "", port: int = 0) -> None:
    """Serve HTTP in this process on the inherited socket `fd` (or a new one on host:port)."""
    import uvicorn

    sock = socket.socket(fileno=fd) if fd is not None else bind(host, port)
    config = uvicorn.Config(
        "services.app:create_app_from_environment",
        factory=True,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        # AROP publishes URLs from configuration, never from forwarded headers (AZ-34).
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[sock])


def supervise(host: str, port: int, workers: int) -> int:
    sock = bind(host, port)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "services.cli", "_worker", "--fd", str(sock.fileno())]
        return subprocess.Popen(command, pass_fds=[sock.fileno()])

    processes = [start() for _ in range(workers)]
    restarts = 0
    log.info("workers started", extra={"pids": [p.pid for p in processes]})
    while not stopping:
        time.sleep(0.2)
        for index, process in enumerate(processes):
            if process.poll() is not None and not stopping:
                delay = RESTART_BACKOFF_SECONDS[min(restarts, len(RESTART_BACKOFF_SECONDS) - 1)]
                log.error("worker exited; restarting", extra={"pid": process.pid, "code": process.returncode, "in_seconds": delay})
                time.sleep(delay)
                restarts += 1
                processes[index] = start()
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    sock.close()
    log.info("stopped")
    return 0


def serve(host: str, port: int, workers: int) -> int:
    if workers == 1:
        run_worker(host=host, port=port)
        return 0
    return supervise(host, port, workers)


if os.name != "posix":  # pragma: no cover - the service targets POSIX hosts
    raise ImportError("the supervisor needs a POSIX system")
