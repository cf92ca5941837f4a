"""A toy speech task for training small test models in seconds, so that tests see a trained model.

Each label has a random spectral template; an utterance is a random label sequence, each label
held for a few frames with silences between, plus noise, per-feature normalised like NeMo's
features. A model trained on it has BatchNorm statistics, confidence and noise robustness of
the kind real training leaves, which random weights do not have.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch

SILENCE_FRAMES = (1, 4)
LABEL_FRAMES = (4, 8)


class ToySpeech:
    def __init__(self, bins: int, labels: int, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)
        self.templates = torch.randn(labels, bins, generator=self.generator) * 1.5
        self.bins, self.labels = bins, labels

    def _randint(self, low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=self.generator))

    def utterance(self, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> features [bins, frames], token ids [tokens]."""
        ids = torch.randint(0, self.labels, (tokens,), generator=self.generator)
        columns = []
        for token in ids.tolist():
            columns += [torch.zeros(self.bins)] * self._randint(*SILENCE_FRAMES)
            columns += [self.templates[token]] * self._randint(*LABEL_FRAMES)
        columns += [torch.zeros(self.bins)] * self._randint(*SILENCE_FRAMES)
        features = torch.stack(columns, dim=1)
        features = features + torch.randn(features.shape, generator=self.generator) * 0.5
        features = (features - features.mean(1, keepdim=True)) / (features.std(1, keepdim=True) + 1e-5)
        return features, ids

    def batch(self, size: int, tokens: tuple[int, int] = (3, 10)):
        """-> features [B, bins, T], lengths [B], targets [B, S], target lengths [B]."""
        items = [self.utterance(self._randint(*tokens)) for _ in range(size)]
        lengths = torch.tensor([f.shape[1] for f, _ in items])
        target_lengths = torch.tensor([len(t) for _, t in items])
        features = torch.zeros(size, self.bins, int(lengths.max()))
        targets = torch.zeros(size, int(target_lengths.max()), dtype=torch.long)
        for b, (f, t) in enumerate(items):
            features[b, :, : f.shape[1]] = f
            targets[b, : len(t)] = t
        return features, lengths, targets, target_lengths


def train_toy_model(model, steps: int = 300, batch_size: int = 16, lr: float = 3e-3, seed: int = 0):
    """Train a NeMo EncDecCTCModel on ToySpeech with CTC; returns the model in eval mode and the last loss."""
    labels = model.decoder.num_classes_with_blank - 1
    task = ToySpeech(model.encoder._feat_in, labels, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        features, lengths, targets, target_lengths = task.batch(batch_size)
        log_probs, encoded_lengths, _ = model.forward(processed_signal=features, processed_signal_length=lengths)
        loss = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1), targets, encoded_lengths, target_lengths, blank=labels, zero_infinity=True
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), loss.item()


def tone_manifest(folder: Path, count: int = 8) -> str:
    """Utterances whose 'words' are tones: a learnable toy task in real audio files."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(count):
        letters = "".join(rng.choice(list("abc"), size=3))
        pieces = [np.sin(2 * np.pi * {"a": 300, "b": 900, "c": 2000}[c] * np.arange(4000) / 16000) for c in letters]
        audio = np.concatenate([np.concatenate([p, np.zeros(1600)]) for p in pieces]).astype(np.float32) * 0.3
        soundfile.write(folder / f"{i}.wav", audio, 16000)
        lines.append(json.dumps({"audio_filepath": f"{i}.wav", "duration": len(audio) / 16000, "text": letters}))
    (folder / "manifest.jsonl").write_text("\n".join(lines))
    return str(folder / "manifest.jsonl")


def tone_training_settings(manifest: str, out: Path, steps: int):
    """A tiny QuartzNet that learns tone_manifest audio in tens of steps."""
    from training.train import TrainSettings

    return TrainSettings(
        manifests=[manifest],
        out=str(out),
        channels=16,
        repeat=1,
        features=16,
        lr=1e-2,
        warmup_steps=5,
        batch_seconds=8,
        steps=steps,
        minutes=5,
    )


def espeak_speech(text: str) -> np.ndarray:
    """float32 samples at 16 kHz of espeak-ng's default voice saying text (needs the espeak-ng program)."""
    wav = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, 16000).astype(np.float32)
