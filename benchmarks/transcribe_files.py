"""`qasr transcribe` on many files: searches in this process against searches in worker processes, in one run.

    .venv/bin/python benchmarks/transcribe_files.py --manifest M [--files 40] [--workers 0]

Transcribes the manifest's first --files audio files twice with the service's settings (the
shipped model and its lexicon search unless QASR_* variables say otherwise): once with every
search in this process (what one file gets) and once with --workers search processes (0: one per
core), each after its engine is open. Prints each way's wall time and real-time factor, the
speed-up, and whether every file's words are the same both ways.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from app.offline import FileTranscript, OfflineTranscriber
from app.settings import Settings


def timed_transcripts(settings: Settings, files: list[Path], in_workers: bool) -> tuple[list[str], float, float]:
    """Every file's text, the wall seconds for all of them, and the seconds of audio; in_workers: the
    searches in worker processes (as several files get them), else in this process (as one file does)."""
    transcriber = OfflineTranscriber(settings, files=len(files) if in_workers else 1)
    try:
        start = time.perf_counter()
        texts, audio_s = [], 0.0
        for path, result in transcriber.transcripts(files, Path.read_bytes):
            if not isinstance(result, FileTranscript):
                raise SystemExit(f"{path}: {result}")
            texts.append(" ".join(word.word for word in result.words))
            audio_s += result.duration
        return texts, time.perf_counter() - start, audio_s
    finally:
        transcriber.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--workers", type=int, default=0, help="search processes (0: one per core)")
    args = parser.parse_args()
    lines = args.manifest.read_text().splitlines()[: args.files]
    files = [args.manifest.parent / json.loads(line)["audio_filepath"] for line in lines]
    settings = Settings(search_workers=args.workers)
    workers = settings.search_worker_count()
    if workers is None or workers < 2:
        raise SystemExit("needs the lexicon search and at least two search workers")
    alone, alone_s, audio_s = timed_transcripts(settings, files, in_workers=False)
    side_by_side, side_by_side_s, _ = timed_transcripts(settings, files, in_workers=True)
    print(f"{len(files)} files, {audio_s:.1f} s of audio, decoder {settings.decoding()}")
    print("| searches | wall s | real-time factor |")
    print("| --- | --- | --- |")
    print(f"| in this process | {alone_s:.1f} | {alone_s / audio_s:.4f} |")
    print(f"| {workers} worker processes | {side_by_side_s:.1f} | {side_by_side_s / audio_s:.4f} |")
    print(f"speed-up: {alone_s / side_by_side_s:.2f}x; same words for every file: {alone == side_by_side}")


if __name__ == "__main__":
    main()
