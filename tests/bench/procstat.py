"""CPU time and peak memory of processes, from /proc (Linux).

CPU is utime + stime of /proc/<pid>/stat (the process's own threads; children excluded).
Peak memory is VmHWM, the resident set's high-water mark; writing "5" to
/proc/<pid>/clear_refs resets it to the current RSS, so each phase gets its own peak.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = raw.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS in KiB ({} when the process is gone)."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(rest.split()[0])
    except OSError:
        return {}
    return values


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Meter:
    """CPU and peak memory of named groups of processes over one phase."""

    def __init__(self, groups: dict[str, list[int]], shared_memory: tuple[str, ...] = ()) -> None:
        self.groups = {name: [p for p in pids if p] for name, pids in groups.items()}
        # Groups whose processes share most of their memory (PostgreSQL backends map the same
        # shared buffers): their peak is the largest process's, not the sum.
        self.shared_memory = set(shared_memory)
        self._start: dict[int, float] = {}

    def start(self) -> None:
        self._start = {}
        for pids in self.groups.values():
            for pid in pids:
                reset_peak(pid)
                self._start[pid] = cpu_seconds(pid) or 0.0

    def stop(self) -> dict[str, dict[str, float]]:
        """Per group: CPU seconds used since start() and the peak RSS in MiB (summed over the
        group's processes, an upper bound of their peak together; the largest one for
        shared-memory groups)."""
        result: dict[str, dict[str, float]] = {}
        for name, pids in self.groups.items():
            cpu = 0.0
            peak = 0
            for pid in pids:
                now = cpu_seconds(pid)
                if now is not None:
                    cpu += now - self._start.get(pid, now)
                hwm = memory_kib(pid).get("VmHWM", 0)
                peak = max(peak, hwm) if name in self.shared_memory else peak + hwm
            result[name] = {"cpu_s": cpu, "peak_rss_mib": peak / 1024, "processes": len(pids)}
        return result
