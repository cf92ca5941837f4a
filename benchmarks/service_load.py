"""Latency and throughput of the HTTP service at several concurrencies, over loopback.

    .venv/bin/python benchmarks/service_load.py --start --model MODEL.nemo --backend integer integer-float
    .venv/bin/python benchmarks/service_load.py --url http://127.0.0.1:8000   # a server already running
    .venv/bin/python benchmarks/service_load.py --start --model models/qasr-en-quartznet5x5.nemo \
        --search-workers 1 2   # one server per count of lexicon search workers, side by side

With --start the script launches `qasr serve` itself (cache in --work) and stops it afterwards;
without --model it serves the QuartzNet-15x5 architecture (random weights: speed does not depend on
what the weights learned). Each level sends --requests uploads of one --seconds clip (speech-like
audio made here) from `concurrency` client threads and prints p50/p95 latency per request and the
throughput as audio seconds per wall second ("x real time"); with --start also the memory of the
server and its search workers after the run (proportional set sizes, so shared pages count once),
and each server's throughput relative to the first one's.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile

from quantizer.nemo_configs import quartznet_config, save_nemo_model

RATE = 16000


def clip(seconds: float) -> bytes:
    """Harmonic bursts with pauses, 16 kHz 16-bit WAV."""
    t = np.arange(int(seconds * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * k * 130 * t) / k for k in range(1, 6)) * (np.sin(2 * np.pi * 2.3 * t) > -0.2)
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * voiced).astype(np.float32), RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def status_kib(pid: int | str, field: str) -> int:
    """A kB field of /proc/PID/status (VmRSS: resident now, VmHWM: its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def memory_bytes(pid: int) -> int:
    """A process's proportional set size, bytes: its resident pages, each shared one divided among
    the processes that share it (0 for a zombie)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except ProcessLookupError:
        return 0
    return next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")) * 1024


def tree_memory_bytes(pid: int) -> int:
    """Memory held by a process and all its descendants (the service's search template and workers),
    bytes: the sum of their proportional set sizes, so pages they share count once in all."""
    total = memory_bytes(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += tree_memory_bytes(int(child))
            except FileNotFoundError:  # it ended while being read
                pass
    return total


def start_server(
    model: Path, backend: str, work: Path, port: int, threads: int, decoder: str, search_workers: int
) -> subprocess.Popen:
    # Cheap calibration: speed does not depend on it (the shipped defaults apply to real serving).
    env = os.environ | {
        "QASR_CACHE_DIR": str(work / "cache"),
        "QASR_THREADS": str(threads),
        "QASR_LOG_LEVEL": "warning",
        "QASR_CALIB_SAMPLES": "2",
        "QASR_CALIB_FRAMES": "200",
        "QASR_CALIB_ITERS": "5",
        "QASR_DECODER": decoder,
        "QASR_SEARCH_WORKERS": str(search_workers),
    }
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--model",
        str(model),
        "--backend",
        backend,
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, env=env)
    wait_until_ready(server, f"http://127.0.0.1:{port}")
    return server


def wait_until_ready(server: subprocess.Popen, url: str, timeout_s: float = 1800) -> None:
    """Poll /health/ready; exit if the server dies or never gets there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"qasr serve exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit(f"the server did not become ready in {timeout_s:.0f} s")


def level(url: str, body: bytes, concurrency: int, requests: int, seconds: float) -> dict:
    with httpx.Client(base_url=url, timeout=120) as client:

        def one(_: int) -> float:
            start = time.perf_counter()
            response = client.post("/v1/transcribe", content=body, headers={"content-type": "audio/wav"})
            response.raise_for_status()
            return time.perf_counter() - start

        for _ in range(2):  # warm-up
            one(0)
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = sorted(pool.map(one, range(requests)))
        wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "x_real_time": requests * seconds / wall,
        "requests_per_s": requests / wall,
    }


def measure(url: str, args: argparse.Namespace) -> list[dict]:
    body = clip(args.seconds)
    return [level(url, body, c, args.requests, args.seconds) for c in args.concurrency]


def measure_started(model: Path, backend: str, workers: int, args: argparse.Namespace) -> tuple[list[dict], int, int]:
    """Rows from a server started for them, and afterwards the memory of the server process and of
    its descendants (the search workers), bytes."""
    server = start_server(model, backend, args.work, args.port, args.threads, args.decoder, workers)
    try:
        rows = measure(f"http://127.0.0.1:{args.port}", args)
        own = memory_bytes(server.pid)
        return rows, own, tree_memory_bytes(server.pid) - own
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def print_rows(rows: list[dict], first: list[dict] | None = None) -> None:
    print(
        "| concurrency | p50 ms | p95 ms | x real time | requests/s |"
        + (" throughput / first server's |" if first else "")
    )
    print("| --- | --- | --- | --- | --- |" + (" --- |" if first else ""))
    for i, row in enumerate(rows):
        ratio = f" {row['requests_per_s'] / first[i]['requests_per_s']:.2f} |" if first else ""
        print(
            f"| {row['concurrency']} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | {row['x_real_time']:.0f} | "
            f"{row['requests_per_s']:.1f} |{ratio}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server; otherwise use --start")
    parser.add_argument("--start", action="store_true", help="launch qasr serve for the run")
    parser.add_argument("--model", type=Path, help=".nemo to serve with --start (default: QuartzNet-15x5 architecture)")
    parser.add_argument(
        "--backend", nargs="+", default=["integer"], help="with --start: one server after another per backend"
    )
    parser.add_argument("--decoder", default="auto", help="with --start: QASR_DECODER")
    parser.add_argument(
        "--search-workers",
        type=int,
        nargs="+",
        default=[0],
        help="with --start: QASR_SEARCH_WORKERS, one server after another per value (0: one per core)",
    )
    parser.add_argument("--threads", type=int, default=0, help="server's ONNX Runtime threads (0: all cores)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/qasr-bench"))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=48, help="per concurrency level")
    args = parser.parse_args()
    if not args.url and not args.start:
        parser.error("give --url of a running server, or --start")
    print(" ".join(["$", "python", *sys.argv]))
    if args.url:
        print(f"{args.seconds:.0f} s clips, {args.requests} requests per level, {args.url}")
        print_rows(measure(args.url, args))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        model = args.work / "quartznet15x5.nemo"
        if not model.exists():
            save_nemo_model(quartznet_config(), model)
    first = None
    for backend, workers in itertools.product(args.backend, args.search_workers):
        rows, server_memory, workers_memory = measure_started(model, backend, workers, args)
        print(
            f"{args.seconds:.0f} s clips, {args.requests} requests per level, backend {backend}, "
            f"decoder {args.decoder}, QASR_SEARCH_WORKERS={workers}: "
            f"after the run the server holds {server_memory / 2**20:.0f} MB, its search workers "
            f"{workers_memory / 2**20:.0f} MB"
        )
        print_rows(rows, first)
        first = first or rows


if __name__ == "__main__":
    main()
