"""Run a Node.js program of the test suite (a real OpenID provider or Authorization Server from
npm) on loopback: `npm ci` from its committed lockfile once, then the program, until it prints
`READY <value>` on stdout."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tests.server import stop

READY_TIMEOUT = 60.0


class NodeProgramError(RuntimeError):
    """The program could not be installed or did not start."""


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise NodeProgramError(f"`{tool}` is not on PATH: these tests need Node.js (>= 20) and npm")
    return path


def npm_ci(directory: Path) -> None:
    """`npm ci` from the committed package-lock.json, once (node_modules/ is git-ignored)."""
    if (directory / "node_modules").is_dir():
        return
    result = subprocess.run(
        [_require("npm"), "ci", "--no-audit", "--no-fund"], check=False, cwd=directory, capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        raise NodeProgramError(f"npm ci in {directory} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


@contextmanager
def run_node(script: str, *, cwd: Path, env: dict[str, str], drop_env_prefix: str = "") -> Iterator[str]:
    """Start `node script` in `cwd` with the test process's environment (minus NODE_ENV and
    variables starting with `drop_env_prefix`) plus `env`; yield what it printed after READY;
    stop it afterwards. Its stderr goes to a file, shown when the block raises."""
    node = _require("node")
    npm_ci(cwd)
    inherited = {k: v for k, v in os.environ.items() if k != "NODE_ENV" and not (drop_env_prefix and k.startswith(drop_env_prefix))}
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [node, script], cwd=cwd, env={**inherited, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
        )
        try:
            ready = _wait_ready(process, stderr, f"node {script} in {cwd}")
            try:
                yield ready
            except Exception:
                sys.stderr.write(f"--- stderr of node {script}:\n{_read(stderr)}")
                raise
        finally:
            stop(process, timeout=10)
            assert process.stdout is not None
            process.stdout.close()


def _wait_ready(process: subprocess.Popen[bytes], stderr: IO[bytes], what: str) -> str:
    """The value of the program's `READY <value>` line, read on a thread so that a program that
    hangs silently fails after READY_TIMEOUT instead of blocking forever."""
    stdout = process.stdout
    assert stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=READY_TIMEOUT).decode().strip()
    except queue.Empty:
        line, problem = "", f"did not print READY in {READY_TIMEOUT:.0f}s"
    else:
        problem = f"printed {line!r} instead of READY" if line else "exited before it was ready"
    if line.startswith("READY "):
        return line.removeprefix("READY ")
    process.kill()
    returncode = process.wait()
    raise NodeProgramError(f"{what} {problem} (exit {returncode}):\n{_read(stderr)}")


def _read(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")
