"""Time and peak memory of the lexicon search on one long input, three ways side by side.

    .venv/bin/python benchmarks/long_search.py --model DIR --manifest M [--minutes 8] [--workers 2]

DIR: a folder written by `qasr quantize`. The `integer` graph runs on the manifest's utterances in
order and their log-probabilities are joined into one input, whole utterances until --minutes are
reached (fewer if the manifest is shorter), as a long recording would reach the search; its
reference is their transcripts joined, and each way's WER on it is printed. Then: one search over all of it
(what every input got until session 25), the same in pieces of at most 30 s cut at pauses (the
default), and those pieces over --workers worker processes. Peak memory is the growth of the peak
resident set during each (Linux's VmHWM, reset before each; for workers, the largest worker's).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jiwer
import numpy as np

from quantizer.ctc import frame_log_probabilities, greedy_text
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.integer_model import IntegerModel
from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL, LexiconDecoder, LexiconSettings
from quantizer.lexicon_workers import SearchWorkers
from quantizer.manifest import load_audio, read_manifest
from quantizer.runtime import Recognizer, logit_scale

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import status_kib  # noqa: E402

FRAMES_PER_MINUTE = 3000  # 20 ms output frames


def reset_peak(pid: int | str = "self") -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS


def joined_log_probabilities(model_dir: str, manifest: str, minutes: float) -> tuple[np.ndarray, str, list[str]]:
    """Whole utterances' log-probabilities joined [T', classes], their transcripts joined, the labels."""
    model = IntegerModel.load(model_dir)
    front_end = LogMelFrontEnd.of(model)
    recognizer = Recognizer(model_dir, "integer", "cpu", 0)
    scale = logit_scale(model, "integer")
    pieces, texts, frames = [], [], 0
    for utterance in read_manifest(manifest, model.labels):
        result = recognizer(*front_end(*pad_audio([load_audio(utterance.audio)])), with_logits=True)
        pieces.append(frame_log_probabilities(result.logits[0, :, : result.lengths[0]], scale))
        texts.append(utterance.text)
        frames += len(pieces[-1])
        if frames >= minutes * FRAMES_PER_MINUTE:
            break
    return np.concatenate(pieces), " ".join(texts), model.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--language-model", default=str(SHIPPED_LANGUAGE_MODEL))
    args = parser.parse_args()

    log_probabilities, reference, labels = joined_log_probabilities(args.model, args.manifest, args.minutes)
    minutes = len(log_probabilities) / FRAMES_PER_MINUTE
    settings = LexiconSettings(language_model=args.language_model)
    rows, paths = [], {}
    # pieces first: memory a larger search freed may stay with the process and hide a smaller one's growth
    for name, longest in (("pieces of <= 30 s", settings.max_frames), ("one search", len(log_probabilities))):
        decoder = LexiconDecoder(labels, LexiconSettings(language_model=args.language_model, max_frames=longest))
        reset_peak()
        before, start = status_kib("self", "VmRSS"), time.perf_counter()
        paths[name] = decoder.best_path(log_probabilities)
        rows.append((name, time.perf_counter() - start, (status_kib("self", "VmHWM") - before) / 1024))
    with SearchWorkers(labels, settings, args.workers) as workers:
        pids = [worker.pid for worker in workers._all]
        before = {}
        for pid in pids:
            reset_peak(pid)
            before[pid] = status_kib(pid, "VmRSS")
        start = time.perf_counter()
        name = f"pieces over {args.workers} workers"
        paths[name] = workers.best_path(log_probabilities)
        elapsed = time.perf_counter() - start
        rows.append((name, elapsed, max(status_kib(pid, "VmHWM") - before[pid] for pid in pids) / 1024))
    print(f"one input of {minutes:.1f} min ({len(log_probabilities)} frames), beam {settings.beam}")
    print("| search | seconds | x one search's speed | peak memory growth, MB | WER % |")
    print("| --- | --- | --- | --- | --- |")
    one_search_s = rows[1][1]
    for name, seconds, grown_mb in [rows[1], rows[0], rows[2]]:
        wer = 100 * jiwer.wer(reference, greedy_text(paths[name], len(paths[name]), labels))
        print(f"| {name} | {seconds:.1f} | {one_search_s / seconds:.2f} | {grown_mb:.0f} | {wer:.2f} |")
    same = np.array_equal(paths["pieces of <= 30 s"], paths[f"pieces over {args.workers} workers"])
    print(f"pieces in workers give the in-process pieces' path: {same}")


if __name__ == "__main__":
    main()
