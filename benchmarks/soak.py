"""Sustained load on a local server: errors, latency percentiles, throughput and memory growth.

    .venv/bin/python benchmarks/soak.py --minutes 10 --concurrency 16 [--model M.nemo] [--json]

Starts `qasr serve` (cache in --work) on a loopback port, sends a mix of short (2 s) and long
(30 s) clips from --concurrency client threads for --warm-up-minutes and then --minutes more (or
until --max-requests are sent), samples the memory of the server and its search workers (summed
proportional set sizes: service_load.tree_memory_bytes) four times a second, and stops the server.
Memory growth compares the mean of the last fifth of the samples after warm-up to the mean of the
first fifth. Memory climbs for about the
first minute of load, and swings by about +-10 % from one sample to the next as requests come and
go; hence the warm-up and the many samples.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import clip, tree_memory_bytes, wait_until_ready  # noqa: E402

CLIPS = {"short": 2.0, "long": 30.0}  # seconds of audio
LONG_EVERY = 5  # one request in five is long
MEMORY_SAMPLE_EVERY_S = 0.25


def soak(url: str, pid: int, warm_up_s: float, seconds: float, concurrency: int, max_requests: int) -> dict:
    bodies = {name: clip(length) for name, length in CLIPS.items()}
    latencies: dict[str, list[float]] = {name: [] for name in CLIPS}
    errors: list[str] = []
    memory: list[tuple[float, int]] = []
    counter = iter(range(max_requests))
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + warm_up_s + seconds

    def sample_memory() -> None:
        while time.monotonic() < stop:
            memory.append((time.monotonic() - start, tree_memory_bytes(pid)))
            time.sleep(MEMORY_SAMPLE_EVERY_S)

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            while time.monotonic() < stop:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                name = "long" if number % LONG_EVERY == 0 else "short"
                began = time.perf_counter()
                try:
                    response = client.post(
                        "/v1/transcribe", content=bodies[name], headers={"content-type": "audio/wav"}
                    )
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
                        continue
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                    continue
                latencies[name].append(time.perf_counter() - began)

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(client_loop)
    wall = time.monotonic() - start
    sampler.join(5)
    return summarise(latencies, errors, memory, wall, warm_up_s)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarise(
    latencies: dict[str, list[float]], errors: list[str], memory: list[tuple[float, int]], wall: float, warm_up_s: float
):
    settled = [held for t, held in memory if t >= warm_up_s]
    fifth = max(1, len(settled) // 5)
    head, tail = settled[:fifth], settled[-fifth:]
    audio = sum(len(v) * CLIPS[name] for name, v in latencies.items())
    everything = [x for v in latencies.values() for x in v]
    return {
        "seconds": round(wall, 1),
        "warm_up_seconds": warm_up_s,
        "requests": len(everything) + len(errors),
        "errors": len(errors),
        "first_errors": errors[:5],
        "latency_ms": {
            name: {f"p{int(q * 100)}": round(1000 * percentile(v, q), 1) for q in (0.5, 0.95, 0.99)}
            for name, v in latencies.items()
        },
        "x_real_time": round(audio / wall, 1),
        "memory_mb": {
            "after_warm_up": round(statistics.mean(head) / 1e6, 1),
            "end": round(statistics.mean(tail) / 1e6, 1),
        },
        "memory_growth": round(statistics.mean(tail) / statistics.mean(head) - 1, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help=".nemo to serve (default: the shipped model)")
    parser.add_argument("--minutes", type=float, default=10.0, help="measured load after the warm-up")
    parser.add_argument("--warm-up-minutes", type=float, default=1.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qasr-soak"))
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--cheap-calibration", action="store_true", help="quick startup (tests)")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = parser.parse_args()
    env = os.environ | {"QASR_CACHE_DIR": str(args.work / "cache"), "QASR_LOG_LEVEL": "warning"}
    if args.cheap_calibration:
        env |= {"QASR_CALIB_SAMPLES": "2", "QASR_CALIB_FRAMES": "80", "QASR_CALIB_ITERS": "5"}
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(args.port)]
    if args.model:
        command += ["--model", str(args.model)]
    server = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{args.port}"
    try:
        wait_until_ready(server, url, timeout_s=900)
        result = soak(
            url, server.pid, args.warm_up_minutes * 60, args.minutes * 60, args.concurrency, args.max_requests
        )
        result["ready_after_soak"] = httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(120)
    if args.json:
        print(json.dumps(result))
        return
    print(" ".join(["$", "python", *sys.argv]))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
