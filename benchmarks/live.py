"""Live streams next to files, in one run: WER, how far final words lag the audio, and compute.

    .venv/bin/python benchmarks/live.py --model DIR --manifest M [--manifest M2 ...]
        [--step 1 --context 2 --lookahead 1 --piece 8 --pause 0.99] [--chunk-ms 100]

DIR is a folder written by `qasr quantize`. Each utterance is transcribed the way `/v1/transcribe`
does a file (QASR_CHUNK_SECONDS windows, whole-file pieces) and the way `/v1/listen` does a live
stream (app.live.LiveTranscriber with these windows and pieces, by default the service's, fed
--chunk-ms of audio at a time), with the service's default backend and lexicon search, in this
process. Prints both WERs and the paired bootstrap interval of their difference, how many
transcripts are identical, each final piece's lag (the audio received when its search was done,
past its end, computing as if the machine kept up: the compute ratio says whether it does), and
compute seconds per audio second each way.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np

from app.decoding import transcript
from app.live import LiveTranscriber, LiveWindows
from app.settings import Settings
from app.transcriber import Engine, decode
from quantizer.manifest import load_audio, read_manifest
from quantizer.significance import paired_bootstrap_interval, word_errors


class TimedEngine:
    """Counts the seconds an engine spends recognising windows."""

    def __init__(self, engine: Engine):
        self.engine, self.seconds = engine, 0.0

    def run(self, windows: list[np.ndarray]) -> list:
        start = time.perf_counter()
        results = self.engine.run(windows)
        self.seconds += time.perf_counter() - start
        return results


def as_file(timed: TimedEngine, samples: np.ndarray, settings: Settings) -> tuple[str, float]:
    """The file path's transcript, and its compute seconds."""
    engine = timed.engine
    before = timed.seconds
    windows, pieces = engine.windows_of(samples, settings.chunk_seconds, settings.chunk_overlap_seconds)
    results = [timed.run([piece])[0] for piece in pieces]
    search_start = time.perf_counter()
    words, _ = decode(engine, windows, results)
    return transcript(words), timed.seconds - before + time.perf_counter() - search_start


async def as_stream(
    timed: TimedEngine, samples: np.ndarray, windows: LiveWindows, chunk: int
) -> tuple[str, list[float], float]:
    """The live path's transcript, each final piece's lag in audio seconds, and its compute seconds."""
    engine = timed.engine

    async def recognise(windows: list[np.ndarray]) -> list:
        return timed.run(windows)

    transcriber = LiveTranscriber(engine, recognise, windows)
    words, lags, searching = [], [], 0.0
    before = timed.seconds

    async def collect(end: bool) -> None:
        nonlocal searching
        start = time.perf_counter()
        if end:
            await transcriber.end()
        while transcriber.pieces.searches:  # as if every search finished before the next chunk came
            piece_done = await transcriber.pieces.next_piece()
            words.extend(piece_done.words)
            lags.append(transcriber.seconds - (piece_done.first_frame + piece_done.frames) * transcriber.frame_seconds)
        searching += time.perf_counter() - start

    for start in range(0, len(samples), chunk):
        await transcriber.add(samples[start : start + chunk])
        await collect(end=False)
    await collect(end=True)
    return transcript(words), lags[:-1], timed.seconds - before + searching  # the last piece waits for the end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a folder written by qasr quantize")
    parser.add_argument("--manifest", action="append", required=True)
    defaults = Settings()
    parser.add_argument("--step", type=float, default=defaults.live_step_seconds)
    parser.add_argument("--context", type=float, default=defaults.live_context_seconds)
    parser.add_argument("--lookahead", type=float, default=defaults.live_lookahead_seconds)
    parser.add_argument("--piece", type=float, default=defaults.live_piece_seconds)
    parser.add_argument("--pause", type=float, default=defaults.live_pause_probability, help="0: as files")
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    args = parser.parse_args()

    settings = Settings(decoder="lexicon")
    timed = TimedEngine(Engine.from_settings(args.model, settings, search_workers=None))
    chunk = int(args.chunk_ms / 1000 * timed.engine.sample_rate)
    windows = LiveWindows(args.step, args.context, args.lookahead, args.piece, args.pause or None)
    references, files, streams, lags = [], [], [], []
    audio_s = file_s = stream_s = 0.0
    for manifest in args.manifest:
        for utterance in read_manifest(manifest, timed.engine.labels):
            samples = load_audio(utterance.audio)
            text, seconds = as_file(timed, samples, settings)
            live_text, live_lags, live_seconds = asyncio.run(as_stream(timed, samples, windows, chunk))
            references.append(utterance.text)
            files.append(text)
            streams.append(live_text)
            lags += live_lags
            audio_s += len(samples) / timed.engine.sample_rate
            file_s += seconds
            stream_s += live_seconds
    timed.engine.close()

    file_edits, words = word_errors(references, files)
    stream_edits, _ = word_errors(references, streams)
    low, high = paired_bootstrap_interval(file_edits, stream_edits, words)
    same = sum(a == b for a, b in zip(files, streams, strict=True))
    print(
        f"{len(references)} utterances, {audio_s / 60:.1f} min; live: {args.step:g} s at a time with "
        f"{args.context:g} s of context and {args.lookahead:g} s of lookahead, pieces up to {args.piece:g} s, "
        f"audio sent {args.chunk_ms:g} ms at a time"
    )
    print("| path | WER % | compute s per audio s |")
    print("| --- | --- | --- |")
    print(f"| file (/v1/transcribe) | {100 * file_edits.sum() / words.sum():.2f} | {file_s / audio_s:.4f} |")
    print(f"| live (/v1/listen) | {100 * stream_edits.sum() / words.sum():.2f} | {stream_s / audio_s:.4f} |")
    print(
        f"WER change live - file: {100 * (stream_edits.sum() - file_edits.sum()) / words.sum():+.2f} "
        f"(95 % interval {100 * low:+.2f} .. {100 * high:+.2f}); identical transcripts {same} of {len(files)}; "
        f"compute ratio live / file {stream_s / file_s:.2f}"
    )
    if lags:
        p50, p90 = np.percentile(lags, [50, 90])
        print(
            f"final pieces before the stream's end: {len(lags)}; lag (audio received when final, past the "
            f"piece's end) median {p50:.2f} s, 90th percentile {p90:.2f} s, most {max(lags):.2f} s"
        )


if __name__ == "__main__":
    main()
