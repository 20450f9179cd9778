"""The application factory: what a worker process loads."""

from __future__ import annotations

import subprocess
import sys


def test_a_default_worker_loads_no_optional_heavy_libraries() -> None:
    """On the embedded defaults a worker needs neither PostgreSQL nor Redis drivers, nor JOSE
    (until something is signed), nor the pydantic/attrs plugins Litestar would add: each costs
    every worker process memory (the RSS target of docs/performance.md)."""
    probe = (
        "import sys\n"
        "from services.app import create_app\n"
        "from services.config import load_config\n"
        "create_app(load_config(environ={}))\n"
        "print(','.join(sorted(m for m in ('asyncpg', 'redis', 'joserfc', 'cryptography', 'pydantic', 'attrs') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
