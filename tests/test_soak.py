"""One minute of sustained load at concurrency 16 after 45 s of warm-up (the CI version of
benchmarks/soak.py's 10 minutes)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


@pytest.mark.slow
def test_a_minute_of_load_gives_no_errors_and_flat_memory(quartznet_nemo, tmp_path):
    command = [
        sys.executable,
        str(SOAK),
        "--model",
        str(quartznet_nemo),
        "--minutes",
        "1",
        "--warm-up-minutes",
        "0.75",
        "--concurrency",
        "16",
        "--work",
        str(tmp_path),
        "--port",
        "8767",
        "--cheap-calibration",
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nsoak: {result}")
    assert result["requests"] > 50 and result["errors"] == 0, result["first_errors"]
    assert result["memory_growth"] <= 0.10
    assert result["ready_after_soak"]
