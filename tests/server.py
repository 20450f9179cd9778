"""Run the real service (`arop serve`) in a subprocess for tests that speak HTTP to it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningServer:
    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10, **kwargs)  # type: ignore[arg-type]


@contextmanager
def run_server(
    workdir: Path,
    *,
    config: str = "",
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    workers: int = 1,
) -> Iterator[RunningServer]:
    """Start `arop serve` on a free loopback port with its own SQLite store in `workdir`;
    yield once /readyz answers; stop it afterwards (and show its log if it failed to start)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "services.cli", "serve", "--port", str(port), "--workers", str(workers), *args]
    if config:
        (workdir / "arop.toml").write_text(config)
        command += ["--config", str(workdir / "arop.toml")]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AROP_")}
    environment.setdefault("AROP_STORE__URL", f"sqlite:///{workdir / 'arop.db'}")
    environment.update(env or {})
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, process, log)
        yield RunningServer(base_url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"arop serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"arop serve did not become ready in {timeout}s:\n{log.read_text()}")
