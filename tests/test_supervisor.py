"""`arop serve --workers N`: one listening socket, N worker processes, restarts, clean stop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.server import run_server
from tests.support import poll

EVALUATION = {
    "subject": {"type": "user", "id": "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},
    "action": {"name": "can_read_todos"},
    "resource": {"type": "todo", "id": "todo-1"},
}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_workers_share_the_socket_and_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    with run_server(tmp_path, workers=2) as server, httpx.Client(base_url=server.base_url) as client:
        supervisor = server.process.pid
        assert poll(lambda: len(_children(supervisor)) == 2, timeout=20)
        workers = _children(supervisor)
        for _ in range(10):
            assert client.post("/access/v1/evaluation", json=EVALUATION).json() == {"decision": True}
        # Metrics aggregate every worker, whichever one answers the scrape.
        assert 'arop_decisions_total{api="evaluation",decision="permit"} 10.0' in client.get("/metrics").text
        os.kill(workers[0], signal.SIGKILL)
        assert poll(lambda: len(_children(supervisor)) == 2 and workers[0] not in _children(supervisor), timeout=20)
        assert poll(lambda: client.get("/readyz").status_code == 200, timeout=20)
        for _ in range(20):
            assert client.post("/access/v1/evaluation", json=EVALUATION).json() == {"decision": True}
        survivors = _children(supervisor)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        assert poll(lambda: not any(Path(f"/proc/{pid}").exists() for pid in survivors), timeout=20)
