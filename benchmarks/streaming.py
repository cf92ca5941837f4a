"""How soon a streamed transcription's first words arrive, next to the whole answer, in one run.

    .venv/bin/python benchmarks/streaming.py --manifest M [--minutes 5] [--model M.nemo] [--repeats 3]
        [--decoder auto|greedy|lexicon]

Starts `qasr serve` on the model (default: the shipped one, so by default the lexicon search in its workers),
joins the manifest's utterances in order into one recording of about --minutes (a long upload),
and sends it to `/v1/audio/transcriptions` --repeats times each way, alternating: without `stream`
(the whole JSON answer) and with `stream=true` (server-sent events). Prints the median seconds to
the first delta and to the done event, the plain request's, the ratios, and whether the streamed
text equals the plain text and its deltas add up to it.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile

from quantizer.manifest import load_audio, read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import RATE, start_server  # noqa: E402

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "qasr-en-quartznet5x5.nemo"


def joined_samples(manifest: str, minutes: float) -> np.ndarray:
    """The manifest's utterances in order, whole ones until `minutes` are reached, as float32 samples."""
    pieces, samples = [], 0
    for utterance in read_manifest(manifest, ENGLISH_LABELS):
        pieces.append(load_audio(utterance.audio))
        samples += len(pieces[-1])
        if samples >= minutes * 60 * RATE:
            break
    return np.concatenate(pieces)


def joined_recording(manifest: str, minutes: float) -> bytes:
    """joined_samples as one 16-bit WAV."""
    buffer = io.BytesIO()
    soundfile.write(buffer, joined_samples(manifest, minutes), RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def plain(client: httpx.Client, wav: bytes) -> tuple[float, str]:
    start = time.perf_counter()
    response = client.post("/v1/audio/transcriptions", data={"model": "m"}, files={"file": ("a.wav", wav)})
    response.raise_for_status()
    return time.perf_counter() - start, response.json()["text"]


def streamed(client: httpx.Client, wav: bytes) -> tuple[float, float, list[str], str]:
    """Seconds to the first delta and to the done event, the deltas, the done event's text."""
    start, first, deltas = time.perf_counter(), None, []
    fields = {"model": "m", "stream": "true"}
    with client.stream("POST", "/v1/audio/transcriptions", data=fields, files={"file": ("a.wav", wav)}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: ") :])
            if event.get("type") == "transcript.text.delta":
                first = first or time.perf_counter() - start
                deltas.append(event["delta"])
            elif event.get("type") == "transcript.text.done":
                return first or float("nan"), time.perf_counter() - start, deltas, event["text"]
            else:
                raise SystemExit(f"unexpected event: {event}")
    raise SystemExit("the stream ended without a transcript.text.done event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decoder", choices=("auto", "greedy", "lexicon"), default="auto")
    parser.add_argument("--work", type=Path, default=Path("/tmp/qasr-bench"))
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()

    wav = joined_recording(args.manifest, args.minutes)
    minutes = soundfile.info(io.BytesIO(wav)).duration / 60
    args.work.mkdir(parents=True, exist_ok=True)
    server = start_server(args.model, "integer", args.work, args.port, 0, args.decoder, 0)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=600) as client:
            runs = [(plain(client, wav), streamed(client, wav)) for _ in range(args.repeats)]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    whole_s = statistics.median(p[0] for p, _ in runs)
    first_s = statistics.median(s[0] for _, s in runs)
    done_s = statistics.median(s[1] for _, s in runs)
    texts = {p[1] for p, _ in runs} | {s[3] for _, s in runs}
    adds_up = all("".join(s[2]) == s[3] for _, s in runs)
    print(
        f"one recording of {minutes:.1f} min, {args.repeats} requests each way, medians; "
        f"model {args.model.name}, decoder {args.decoder}"
    )
    print("| request | seconds to the first words | seconds to the whole text | deltas |")
    print("| --- | --- | --- | --- |")
    print(f"| plain | {whole_s:.1f} | {whole_s:.1f} | - |")
    print(f"| stream=true | {first_s:.1f} | {done_s:.1f} | {statistics.median(len(s[2]) for _, s in runs):.0f} |")
    print(f"first words {whole_s / first_s:.1f}x sooner; whole text streamed / plain: {done_s / whole_s:.2f}")
    print(f"one text from every request: {len(texts) == 1}; deltas add up to the done text: {adds_up}")


if __name__ == "__main__":
    main()
