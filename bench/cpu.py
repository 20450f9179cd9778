"""CPU accounting, to tell a clean measurement from one disturbed by other work on the machine.

The benchmark shares 2 cores between wrk and the server under test; anything else that runs
at the same time (a test suite, a build) steals CPU from both and shows up as lower req/s and
long tails. `Account` measures, over one run, how much of the machine's CPU was used by
processes that are neither the server's tree, nor wrk, nor this harness ("foreign" CPU).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int, int]:
    """(busy, steal, total) clock ticks of all CPUs since boot.

    Busy is user + nice + system only: that is what processes are charged with; irq/softirq
    time (loopback networking) is charged to no process and would otherwise look like foreign
    work. Steal is time the hypervisor did not run our virtual CPUs; on this machine kind
    it also grows with every idle/wake cycle of a vCPU, so it is high at low concurrency even
    when nothing else runs: recorded, but not a sign of foreign work."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already included in user/nice
    return fields[0] + fields[1] + fields[2], fields[7], total


def process_ticks(pids: list[int]) -> int:
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks


def _rusage_s(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of the machine's CPU busy over the next `seconds`."""
    busy0, _, total0 = machine_ticks()
    time.sleep(seconds)
    busy1, _, total1 = machine_ticks()
    return (busy1 - busy0) / max(total1 - total0, 1)


@dataclass
class Account:
    """Use around one run: `with Account(server.pids) as acct: ...` then read the fields.

    wrk's CPU comes from RUSAGE_CHILDREN, so wrk must be a reaped child of this process
    started and finished inside the block (subprocess.run does that).
    """

    pids: Callable[[], list[int]]  # the server's current PIDs
    server_share: float = 0.0  # of the machine's capacity (1.0 = all cores busy)
    wrk_share: float = 0.0
    foreign_share: float = 0.0
    steal_share: float = 0.0

    def __enter__(self) -> Account:
        self._busy, self._steal, self._total = machine_ticks()
        self._server = process_ticks(self.pids())
        self._children = _rusage_s(resource.RUSAGE_CHILDREN)
        self._self = _rusage_s(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *exc: object) -> None:
        busy, steal, total = machine_ticks()
        capacity = max(total - self._total, 1) / TICK  # CPU-seconds available on all cores
        server = (process_ticks(self.pids()) - self._server) / TICK
        wrk = _rusage_s(resource.RUSAGE_CHILDREN) - self._children
        own = _rusage_s(resource.RUSAGE_SELF) - self._self
        used = (busy - self._busy) / TICK
        self.server_share = server / capacity
        self.wrk_share = wrk / capacity
        self.foreign_share = max(used - server - wrk - own, 0.0) / capacity
        self.steal_share = (steal - self._steal) / TICK / capacity
