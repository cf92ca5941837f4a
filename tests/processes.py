"""Processes in tests: whether ones that are not the test's children (forked search workers) are
still running, and `qasr serve` in a child process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


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


def served(nemo: Path, cache: Path, settings: dict[str, str], **popen) -> tuple[subprocess.Popen, str]:
    """`qasr serve` on a small model with a cheap calibration and these QASR_* settings, on a free
    port: the process and its URL, once ready (or once 120 s have passed). popen: for subprocess.Popen."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | {
        "QASR_CACHE_DIR": str(cache),
        "QASR_CALIB_SAMPLES": "2",
        "QASR_CALIB_FRAMES": "80",
        "QASR_CALIB_ITERS": "5",
        "QASR_THREADS": "1",
        **settings,
    }
    command = [sys.executable, "-m", "app.cli", "serve", "--model", str(nemo), "--port", str(port)]
    server = subprocess.Popen(command, env=env, **popen)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return server, url
