"""Whether processes that are not the test's children (forked search workers) are still running."""

from __future__ import annotations

import time
from pathlib import Path


def running(pid: int) -> bool:
    """Whether a process exists and has not ended (a zombie, not yet reaped, has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def ended_within(pids: list[int], seconds: float) -> bool:
    """Wait up to `seconds` for every one of `pids` to end; whether they all did."""
    deadline = time.monotonic() + seconds
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(running(pid) for pid in pids)
