"""Time and peak memory of `qasr quantize` on the published architectures (random weights).

    .venv/bin/python benchmarks/quantize_cost.py [--work DIR] [--only quartznet15x5|jasperdr10x5]

Builds each architecture with NeMo (random weights, BatchNorm statistics measured on random
speech-like inputs), saves it as a .nemo in DIR (kept for reruns), then runs `qasr quantize` in
a child process under /usr/bin/time for its peak resident memory, and prints one table row per run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from quantizer.nemo_configs import jasperdr_config, quartznet_config, save_nemo_model

RUNS = {
    # name: (config builder, quantize options)
    "quartznet15x5": (quartznet_config, []),
    "jasperdr10x5": (
        jasperdr_config,
        ["--samples", "2", "--frames", "200", "--min-frames", "200", "--iters", "20", "--eval-samples", "1"],
    ),
}


def peak_rss_mb(time_output: str) -> float:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_output)
    return int(match.group(1)) / 1024 if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qasr-bench"))
    parser.add_argument("--only", choices=sorted(RUNS))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (config, options) in RUNS.items():
        if args.only and name != args.only:
            continue
        checkpoint = args.work / f"{name}.nemo"
        if not checkpoint.exists():
            save_nemo_model(config(), checkpoint)
        out = args.work / f"{name}-int8"
        command = [
            "/usr/bin/time",
            "-v",
            sys.executable,
            "-m",
            "quantizer.cli",
            "quantize",
            str(checkpoint),
            "--out",
            str(out),
            *options,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{name}: qasr quantize failed:\n{done.stderr[-2000:]}")
        report = json.loads((out / "report.json").read_text())
        rows.append((name, report, seconds, peak_rss_mb(done.stderr), " ".join(options) or "(defaults)"))
    print("| architecture | parameters | options | wall s | peak RSS MB | stages s | BN loss | size MB fp32 -> int8 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, report, seconds, rss, options in rows:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in report["seconds"].items())
        loss = report["synthetic"]
        size = report["size"]
        print(
            f"| {name} | {report['parameters']:,} | {options} | {seconds:.0f} | {rss:.0f} | {stages} | "
            f"{loss['initial_loss']:.3f} -> {loss['final_loss']:.3f} | "
            f"{size['fp32_bytes'] / 1e6:.1f} -> {size['quantized_bytes'] / 1e6:.1f} |"
        )


if __name__ == "__main__":
    main()
