"""A process's own CPU time and memory, read from /proc (Linux), split by thread.

CPU time comes from each thread's ``schedstat`` (nanoseconds on a CPU), finer than ``stat``'s clock
ticks (10 ms), so a short round still gives microseconds per hit. The main thread runs the event loop;
every other thread (the store's committer, executor threads) is summed as "other": Python does not
name its threads for the kernel, so they cannot be told apart from outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.processes import Process

P = TypeVar("P", bound=Process)


@dataclass(frozen=True)
class CpuTime:
    loop_ns: int  # the main thread (the event loop)
    other_ns: int  # all other threads

    @property
    def total_ns(self) -> int:
        return self.loop_ns + self.other_ns

    def __sub__(self, earlier: CpuTime) -> CpuTime:
        return CpuTime(self.loop_ns - earlier.loop_ns, self.other_ns - earlier.other_ns)


def cpu_time(pid: int) -> CpuTime:
    """CPU time of ``pid``'s live threads (a thread that ended took its time with it)."""
    loop = other = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ns = int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended while we read
        if int(task.name) == pid:
            loop = ns
        else:
            other += ns
    return CpuTime(loop, other)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for {pid}")


def pinned(process: P, core: int) -> P:
    """``process``, to be started on ``core`` only, every thread of it (``taskset`` execs the program,
    so the pid stays the program's)."""
    process.argv = ["taskset", "--cpu-list", str(core), *process.argv]
    return process
