"""Run the real service (`arop serve`) in a subprocess for tests that speak HTTP to it."""

from __future__ import annotations

import os
import signal
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

    def pids(self) -> list[int]:
        """The serving process and every process under it (with `--workers N`, the workers)."""
        found, parents = [self.process.pid], [self.process.pid]
        while parents:
            children = _children(parents.pop())
            found += children
            parents += children
        return found

    def kill(self) -> None:
        """SIGKILL the service, as a crash or an OOM kill would, at whatever point it is: the
        serving process and its workers together, then wait until none of them runs. Started
        with `new_session=True` the service is a process group of its own, killed as one at
        once; else each of its processes is killed by pid, the supervisor first so that it
        replaces none."""
        pid, pids = self.process.pid, None
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            pids = self.pids()
            for each in pids:
                try:
                    os.kill(each, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.process.wait(timeout=15)
        deadline = time.monotonic() + 15
        while left := (_group(pid) if pids is None else [each for each in pids if _running(each)]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {left} of arop serve outlived SIGKILL")
            time.sleep(0.05)


@contextmanager
def run_server(
    workdir: Path,
    *,
    config: str = "",
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    workers: int = 1,
    port: int | None = None,
    new_session: bool = False,
) -> Iterator[RunningServer]:
    """Start `arop serve` on a free loopback port with its own SQLite store in `workdir`;
    yield once /readyz answers; stop it afterwards (and show its log if it failed to start).

    `port` fixes the port (a service started again where it ran before: its URLs, and so the
    issuer and audience of what it signed, stay the same); `new_session` makes the service a
    process group of its own, so that `RunningServer.kill` kills its workers with it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = [sys.executable, "-m", "services.cli", "serve", "--port", str(port), "--workers", str(workers), *args]
    if config:
        (workdir / "arop.toml").write_text(config)
        command += ["--config", str(workdir / "arop.toml")]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AROP_")}
    environment.setdefault("AROP_STORE__URL", f"sqlite:///{workdir / 'arop.db'}")
    environment.update(env or {})
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, process, log)
        yield RunningServer(base_url, process, log)
    finally:
        stop(process, timeout=15)


def stop(process: subprocess.Popen[bytes], *, timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Restartable:
    """One installation of the service (its configuration, store and port) that a test starts,
    kills (`RunningServer.kill`: SIGKILL, no shutdown code runs) and starts again on the same
    store and the same port: its URLs, and so the issuer and audience of what it signed, are
    those of a service that restarts in place. Each run is a process group of its own, and logs
    to a directory of its own (`run-N/server.log`)."""

    def __init__(
        self, workdir: Path, *, config: str = "", env: dict[str, str] | None = None, args: tuple[str, ...] = (), workers: int = 1
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.env = env
        self.args = args
        self.workers = workers
        self.port = free_port()
        self.runs = 0

    @contextmanager
    def start(self) -> Iterator[RunningServer]:
        """The next run, stopped when the block ends (if a kill did not stop it first)."""
        self.runs += 1
        with run_server(
            self.workdir / f"run-{self.runs}", config=self.config, env=self.env, args=self.args, workers=self.workers,
            port=self.port, new_session=True,
        ) as server:
            yield server


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


def _processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue


def _children(pid: int) -> list[int]:
    return [child for child, fields in _processes() if int(fields[1]) == pid]


def _group(pgid: int) -> list[int]:
    """The processes of the process group that still run (zombies waiting to be reaped do not)."""
    return [pid for pid, fields in _processes() if int(fields[2]) == pgid and fields[0] not in ("Z", "X")]


def _running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
