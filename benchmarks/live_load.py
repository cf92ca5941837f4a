"""How many live streams the service keeps up with in real time, over loopback, in one run.

    .venv/bin/python benchmarks/live_load.py --manifest M [--streams 1 4 8] [--seconds 60] [--model M.nemo]

Starts `qasr serve` on the model (default: the shipped one, so the lexicon search in one worker
per core; cheap calibration, which speed does not depend on), joins the manifest's utterances
into one recording of about --seconds, and for each count N opens N streams at once, each sending
the recording in 100 ms messages every 100 ms, as a microphone would. Prints, over all N streams,
each final result's lag in wall-clock seconds (its arrival, past the moment the audio at its end
was sent): median, 90th percentile and most, the median over the recording's last quarter (a lag
that grows means the service falls behind), and how many streams gave the one-stream transcript.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import RATE, start_server  # noqa: E402
from streaming import joined_samples  # noqa: E402

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "qasr-en-quartznet5x5.nemo"
MESSAGE_S = 0.1


def recording(manifest: str, seconds: float) -> bytes:
    """The manifest's utterances in order, whole ones until `seconds` are reached, as 16-bit PCM."""
    samples = joined_samples(manifest, seconds / 60)
    return (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def one_stream(url: str, pcm: bytes, out: list) -> None:
    """Send `pcm` in real time; append (lags of its finals as (audio end s, lag s), transcript)."""
    finals: list[tuple[float, float]] = []
    words: list[str] = []
    step = int(MESSAGE_S * RATE) * 2
    with connect(url, max_size=None) as socket:
        start = time.monotonic()

        def read() -> None:
            for message in map(json.loads, socket):
                if message["type"] == "Results" and message["is_final"]:
                    end = message["start"] + message["duration"]
                    finals.append((end, time.monotonic() - start - end))
                    words.append(message["channel"]["alternatives"][0]["transcript"])

        reader = threading.Thread(target=read)
        reader.start()
        for index, offset in enumerate(range(0, len(pcm), step)):
            socket.send(pcm[offset : offset + step])
            time.sleep(max(0.0, start + (index + 1) * MESSAGE_S - time.monotonic()))
        socket.send(json.dumps({"type": "CloseStream"}))
        reader.join()
    out.append((finals, " ".join(w for w in words if w)))


def level(url: str, pcm: bytes, streams: int) -> dict:
    results: list = []
    threads = [threading.Thread(target=one_stream, args=(url, pcm, results)) for _ in range(streams)]
    for thread in threads:
        thread.start()
        time.sleep(0.03)  # not all in the same instant
    for thread in threads:
        thread.join()
    seconds = len(pcm) / 2 / RATE
    lags = [lag for finals, _ in results for _, lag in finals]
    late = [lag for finals, _ in results for end, lag in finals if end >= 0.75 * seconds]
    p50, p90 = np.percentile(lags, [50, 90])
    texts = [text for _, text in results]
    return {
        "streams": streams,
        "p50": p50,
        "p90": p90,
        "most": max(lags),
        "late": statistics.median(late),
        "texts": texts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qasr-bench"))
    parser.add_argument("--port", type=int, default=8768)
    args = parser.parse_args()

    pcm = recording(args.manifest, args.seconds)
    args.work.mkdir(parents=True, exist_ok=True)
    server = start_server(args.model, "integer-float", args.work, args.port, 0, "auto", 0)
    try:
        rows = [level(f"ws://127.0.0.1:{args.port}/v1/listen", pcm, n) for n in args.streams]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    alone = rows[0]["texts"][0]
    print(f"recording of {len(pcm) / 2 / RATE:.1f} s sent in real time by each stream")
    print("| streams | final lag median / 90th pct / most, s | median in the last quarter, s | one-stream transcript |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        same = sum(text == alone for text in row["texts"])
        print(
            f"| {row['streams']} | {row['p50']:.2f} / {row['p90']:.2f} / {row['most']:.2f} | {row['late']:.2f} "
            f"| {same} of {row['streams']} |"
        )


if __name__ == "__main__":
    main()
