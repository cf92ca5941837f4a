"""Train a NeMo QuartzNet-architecture CTC model on CPU, resumably, with SpecAugment.

    .venv/bin/python -m training.train --manifest ../shared/data/librispeech-mini-train/manifest.jsonl \
        --out runs/qn5x3 --minutes 60

With --teacher DIR (frames from `training.teacher`), a 1x1 head on the encoder output also learns
to predict Whisper tiny.en's encoder frames (L1 minus log-sigmoid cosine, weighted by
--distill-weight): dense targets for every 20 ms of the little real audio there is. The head is
training-only; model.nemo does not contain it.

Runs until --minutes of wall time (or --steps) are used, then saves. `DIR/checkpoint.pt` (model,
optimizer, step) is rewritten atomically every --save-minutes and picked up by the next run with
the same --out; `DIR/model.nemo` is written at the end; `DIR/train.jsonl` logs every step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from quantizer.manifest import SAMPLE_RATE, load_utterance, read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS, build_nemo_model, quartznet_config
from training.augment import change_speed, degrade, draw_degradations, draw_factors, stretch_frames
from training.data import duration_batches
from training.fft_conv import use_fft_depthwise
from training.teacher import STATS, TEACHER_DIM, frames_key

CHECKPOINT = "checkpoint.pt"
LOG = "train.jsonl"


@dataclass
class TrainSettings:
    manifests: list[str]
    out: str
    channels: int = 192
    repeat: int = 3  # repeats per block, 5 blocks (QuartzNet 5xR)
    features: int = 64
    dropout: float = 0.1
    lr: float = 3e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-3
    batch_seconds: float = 64.0  # audio per batch, padded
    max_utterance_seconds: float = 17.5
    minutes: float = 60.0
    steps: int = 0  # 0: no step limit
    save_minutes: float = 5.0
    seed: int = 0
    anneal_from: int = 0  # with anneal_to: the learning rate falls linearly to 0 between these steps
    anneal_to: int = 0
    teacher: str = ""  # directory of training.teacher frames; "" trains on CTC alone
    distill_weight: float = 0.5
    speed_range: float = 0.0  # each utterance at speed 1 - r, 1 or 1 + r, drawn per batch (0: off)
    degrade_probability: float = 0.0  # share of utterances put in a simulated room and/or noise, per batch
    spec_augment: dict = field(
        default_factory=lambda: {"freq_masks": 2, "time_masks": 2, "freq_width": 15, "time_width": 0.05}
    )


def model_config(settings: TrainSettings) -> dict:
    c = settings.channels
    config = quartznet_config(
        groups=(c,) * 5,
        kernels=(33, 39, 51, 63, 75),
        blocks_per_group=1,
        repeat=settings.repeat,
        prologue=(c, 33),
        epilogue=(c, 87, 2 * c),
        features=settings.features,
        dropout=settings.dropout,
    )
    config["spec_augment"] = {
        "_target_": "nemo.collections.asr.modules.SpectrogramAugmentation",
        **settings.spec_augment,
    }
    return config


def learning_rate(settings: TrainSettings, step: int) -> float:
    """Linear warm-up, then inverse square root decay (no total length needed: runs are resumed);
    a final run may anneal it linearly to zero from step anneal_from to anneal_to."""
    rate = settings.lr * min((step + 1) / settings.warmup_steps, math.sqrt(settings.warmup_steps / (step + 1)))
    if settings.anneal_to > settings.anneal_from and step >= settings.anneal_from:
        rate *= max(0.0, (settings.anneal_to - step) / (settings.anneal_to - settings.anneal_from))
    return rate


def _save(path: Path, payload: dict) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)  # a crash mid-write leaves the previous checkpoint intact


def _batch(utterances, labels: list[str], speeds: list[float], degradations: list[tuple[float, float]], seed: int):
    noise_rng = np.random.default_rng(seed)
    audio = [
        degrade(change_speed(load_utterance(u), speed), snr_db, rt60_s, noise_rng)
        for u, speed, (snr_db, rt60_s) in zip(utterances, speeds, degradations, strict=True)
    ]
    samples = torch.tensor([len(a) for a in audio])
    signal = torch.zeros(len(audio), int(samples.max()))
    for b, a in enumerate(audio):
        signal[b, : len(a)] = torch.from_numpy(a)
    ids = [[labels.index(c) for c in u.text] for u in utterances]
    targets = torch.zeros(len(ids), max(len(i) for i in ids), dtype=torch.long)
    for b, i in enumerate(ids):
        targets[b, : len(i)] = torch.tensor(i)
    return signal, samples, targets, torch.tensor([len(i) for i in ids])


class TeacherTargets:
    """Normalised teacher frames for batches of utterances; utterances without frames are masked out."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        stats = np.load(self.directory / STATS)
        self.mean, self.std = stats["mean"], stats["std"]

    def batch(self, utterances, frames: int, speeds: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """targets [B, 384, frames] float32 and mask [B, frames] bool, for utterances played at speeds."""
        targets = torch.zeros(len(utterances), TEACHER_DIM, frames)
        mask = torch.zeros(len(utterances), frames, dtype=torch.bool)
        for b, (utterance, speed) in enumerate(zip(utterances, speeds, strict=True)):
            path = self.directory / f"{frames_key(utterance.audio)}.npy"
            if path.exists():
                teacher = (np.load(path).astype(np.float32) - self.mean) / self.std  # [T, 384]
                stretched = stretch_frames(torch.from_numpy(teacher.T), speed)  # [384, T']
                n = min(frames, stretched.shape[-1])
                targets[b, :, :n] = stretched[:, :n]
                mask[b, :n] = True
        return targets, mask


def distillation_loss(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over unmasked frames of L1 - log sigmoid(cosine); predicted/target [B, D, T], mask [B, T]."""
    per_frame = (predicted - target).abs().mean(dim=1) - torch.nn.functional.logsigmoid(
        torch.nn.functional.cosine_similarity(predicted, target, dim=1)
    )
    return (per_frame * mask).sum() / mask.sum().clamp(min=1)


def train(settings: TrainSettings) -> dict:
    """Train (or resume) and return the last logged step."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = ENGLISH_LABELS
    model = build_nemo_model(model_config(settings), seed=settings.seed, realistic_batch_norm=False)
    use_fft_depthwise(model)  # same weights and results, several times faster on CPU
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    step, seen_seconds, state = 0, 0.0, {}
    if (out / CHECKPOINT).exists():
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, seen_seconds = state["step"], state["seen_seconds"]
    teacher = TeacherTargets(settings.teacher) if settings.teacher else None
    if teacher:
        head = torch.nn.Conv1d(model.cfg.decoder.feat_in, TEACHER_DIM, 1)
        head_optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        if "teacher_head" in state:
            head.load_state_dict(state["teacher_head"])
            head_optimizer.load_state_dict(state["teacher_head_optimizer"])
        encoded: dict[str, torch.Tensor] = {}
        model.encoder.register_forward_hook(lambda _module, _inputs, outputs: encoded.update(output=outputs[0]))
    optimizers = [optimizer, head_optimizer] if teacher else [optimizer]
    utterances = [u for m in settings.manifests for u in read_manifest(m, labels, settings.max_utterance_seconds)]
    rng = random.Random(settings.seed + step)
    start = last_save = time.monotonic()
    record: dict = {}
    model.train()
    with open(out / LOG, "a") as log:
        while True:
            for batch in duration_batches(utterances, settings.batch_seconds, rng):
                speeds = draw_factors(len(batch), settings.speed_range, rng)
                degradations = draw_degradations(len(batch), settings.degrade_probability, rng)
                signal, samples, targets, target_lengths = _batch(batch, labels, speeds, degradations, step)
                for group in (g for o in optimizers for g in o.param_groups):
                    group["lr"] = learning_rate(settings, step)
                log_probs, encoded_lengths, _ = model.forward(input_signal=signal, input_signal_length=samples)
                ctc = torch.nn.functional.ctc_loss(
                    log_probs.transpose(0, 1),
                    targets,
                    encoded_lengths,
                    target_lengths,
                    blank=len(labels),
                    zero_infinity=True,
                )
                loss, distill = ctc, None
                if teacher:
                    frames = encoded["output"].shape[-1]
                    teacher_frames, mask = teacher.batch(batch, frames, speeds)
                    mask &= torch.arange(frames)[None, :] < encoded_lengths[:, None]
                    distill = distillation_loss(head(encoded["output"]), teacher_frames, mask)
                    loss = ctc + settings.distill_weight * distill
                for o in optimizers:
                    o.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                for o in optimizers:
                    o.step()
                step += 1
                seen_seconds += float(samples.sum()) / SAMPLE_RATE
                record = {
                    "step": step,
                    "loss": round(ctc.item(), 4),  # CTC alone, comparable across runs with and without a teacher
                    **({"distill": round(distill.item(), 4)} if teacher else {}),
                    "lr": learning_rate(settings, step - 1),
                    "audio_hours": round(seen_seconds / 3600, 4),
                    "wall_s": round(time.monotonic() - start, 1),
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
                finished = (
                    settings.steps and step >= settings.steps
                ) or time.monotonic() - start > settings.minutes * 60
                if finished or time.monotonic() - last_save > settings.save_minutes * 60:
                    payload = {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "step": step,
                        "seen_seconds": seen_seconds,
                        "settings": asdict(settings),
                    }
                    if teacher:
                        payload["teacher_head"] = head.state_dict()
                        payload["teacher_head_optimizer"] = head_optimizer.state_dict()
                    _save(out / CHECKPOINT, payload)
                    last_save = time.monotonic()
                if finished:
                    model.eval().save_to(str(out / "model.nemo"))
                    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", action="append", required=True, help="NeMo manifest (repeatable)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores); 1 leaves a core free")
    defaults = TrainSettings([], "")
    tunable = ("channels", "repeat", "lr", "batch_seconds", "minutes", "steps", "save_minutes", "seed")
    tunable += ("anneal_from", "anneal_to", "teacher", "distill_weight", "dropout", "speed_range")
    tunable += ("degrade_probability",)
    for name in tunable:
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 2)
    settings = TrainSettings(
        manifests=args.manifest,
        out=args.out,
        **{n: getattr(args, n) for n in tunable},
    )
    print(json.dumps(train(settings)))


if __name__ == "__main__":
    main()
