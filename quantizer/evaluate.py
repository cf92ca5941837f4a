"""Word and character error rates of a quantized model's backends on NeMo manifests."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from quantizer.ctc import frame_log_probabilities, greedy_text
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.integer_model import IntegerModel
from quantizer.lexicon import LexiconDecoder
from quantizer.lexicon_workers import SearchWorkers
from quantizer.manifest import Utterance, load_utterance, read_manifest
from quantizer.runtime import Recognizer, logit_scale
from quantizer.significance import word_errors


@dataclass
class Evaluation:
    backend: str
    provider: str  # ONNX Runtime provider that ran it
    wer: float
    cer: float
    references: list[str]
    hypotheses: list[str]
    audio: list[Path]
    seconds: float  # audio evaluated
    edits: np.ndarray  # word edits per utterance, [utterances]
    words: np.ndarray  # reference words per utterance, [utterances]
    groups: list[str]  # each utterance's value of the group_by field ("" without one)
    manifests: list[str]  # each utterance's manifest

    def wer_by_group(self, groups: list[str] | None = None) -> dict[str, tuple[int, int, float]]:
        """Per group (by default the group_by field's; `self.manifests` for a per-manifest table), sorted
        by name: utterances, reference words and WER (edits over words)."""
        groups = self.groups if groups is None else groups
        table = {}
        for group in sorted(set(groups)):
            chosen = np.array([g == group for g in groups])
            words = int(self.words[chosen].sum())
            table[group] = (int(chosen.sum()), words, float(self.edits[chosen].sum()) / max(words, 1))
        return table


def transcribe(
    recognizer: Recognizer,
    front_end: LogMelFrontEnd,
    labels: list[str],
    utterances: list[Utterance],
    batch: int,
    lexicon: LexiconDecoder | SearchWorkers | None = None,
    logit_scale: float = 1.0,
) -> list[str]:
    """Transcripts, batched in manifest order (padded batches give what each gives alone): greedy,
    or by lexicon beam search over the logits (times logit_scale: the integer graph's are codes).
    Searches run beside the next batches' inference, as many at once as `lexicon` has workers."""
    searches = lexicon.count if isinstance(lexicon, SearchWorkers) else 1
    hypotheses: list[str | Future[str]] = []
    with ThreadPoolExecutor(searches) as pool:
        for start in range(0, len(utterances), batch):
            audio = [load_utterance(u) for u in utterances[start : start + batch]]
            features, frames = front_end(*pad_audio(audio))
            result = recognizer(features, frames, with_logits=lexicon is not None)
            for b, length in enumerate(result.lengths):
                if lexicon is None:
                    hypotheses.append(greedy_text(result.tokens[b], length, labels))
                else:
                    log_probabilities = frame_log_probabilities(result.logits[b, :, :length], logit_scale)
                    hypotheses.append(pool.submit(_search_text, lexicon, log_probabilities, labels))
    return [h if isinstance(h, str) else h.result() for h in hypotheses]


def _search_text(lexicon: LexiconDecoder | SearchWorkers, log_probabilities: np.ndarray, labels: list[str]) -> str:
    path = lexicon.best_path(log_probabilities)
    return greedy_text(path, len(path), labels)


def evaluate(
    model_dir: str | Path,
    manifest: str | Path | list[str | Path],
    backend: str,
    batch: int = 8,
    threads: int = 0,
    device: str = "cpu",
    lexicon: LexiconDecoder | SearchWorkers | None = None,
    group_by: str | None = None,
) -> Evaluation:
    """Transcribe a manifest, or several pooled, with one backend (greedy, or with the lexicon beam
    search) and score it, per utterance too, so that WER can be broken down by a manifest field
    (group_by) or by manifest."""
    model = IntegerModel.load(model_dir)
    if model.filterbank is None or model.window is None:
        raise ValueError(f"{model_dir}: the checkpoint stored no mel filterbank/window, so features cannot be made")
    manifests = manifest if isinstance(manifest, list) else [manifest]
    utterances, sources = [], []
    for path in manifests:
        read = read_manifest(path, model.labels, group_by=group_by)
        if not read:
            raise ValueError(f"{path}: no utterance with text in the model's vocabulary")
        utterances += read
        sources += [str(path)] * len(read)
    front_end = LogMelFrontEnd.of(model)
    recognizer = Recognizer(model_dir, backend, device=device, threads=threads)
    scale = logit_scale(model, backend)
    hypotheses = transcribe(recognizer, front_end, model.labels, utterances, batch, lexicon, scale)
    references = [u.text for u in utterances]
    edits, words = word_errors(references, hypotheses)
    return Evaluation(
        backend=backend,
        provider=recognizer.provider,
        wer=jiwer.wer(references, hypotheses),
        cer=jiwer.cer(references, hypotheses),
        references=references,
        hypotheses=hypotheses,
        audio=[u.audio for u in utterances],
        seconds=sum(u.seconds for u in utterances),
        edits=edits,
        words=words,
        groups=[u.group for u in utterances],
        manifests=sources,
    )
