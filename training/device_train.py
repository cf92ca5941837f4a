"""Continue training a QuartzNet on a GPU, without NeMo: the audio decoded into GPU memory once,
batches, speed perturbation, features and SpecAugment all made on the device.

    python -m training.device_train --init models/qasr-en-quartznet5x5.nemo \\
        --manifest packed/real.jsonl --manifest packed/corpus.jsonl --minutes 4 --out runs/gpu

Starts from --init's weights with fresh AdamW moments, or resumes from OUT/state.pt when an earlier
run left one (so a lease can be spent in several calls). The learning rate warms up over
--warmup-steps and falls linearly to 0 at --anneal-minutes of training over all runs (default: this
run's --minutes), so the last run ends annealed. Manifests may point into packed files (`offset`,
as `training.pack_opus` writes); list one several times to weight it. Writes OUT/network.pt (the
ConvASR state dict) and OUT/state.pt every --save-minutes and at the end, and logs to
OUT/train.jsonl. `training.network_to_nemo` turns network.pt into a .nemo where NeMo is installed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from quantizer.checkpoint import read_nemo
from quantizer.features import LogMelFrontEnd
from quantizer.manifest import SAMPLE_RATE, Utterance, load_audio, read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS
from training.augment import speed_factors
from training.data import duration_batches
from training.fft_conv import use_fft_depthwise
from training.torch_quartznet import ConvASR, network_state

NETWORK = "network.pt"
STATE = "state.pt"
LOG = "train.jsonl"


@dataclass
class DeviceTrainSettings:
    init: str
    manifests: list[str]
    out: str
    minutes: float = 4.0  # of this run
    steps: int = 0  # stop at this step (over all runs) if it comes first; 0: no step limit
    anneal_minutes: float = 0.0  # the learning rate reaches 0 after this much training over all runs (0: minutes)
    lr: float = 1.5e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-3
    batch_seconds: float = 512.0  # audio per batch, padded
    max_utterance_seconds: float = 17.5
    speed_range: float = 0.1
    dither: float = 1e-5  # NeMo's preprocessor default, added to the audio while training
    freq_masks: int = 2  # SpecAugment, as in the model's config
    freq_width: int = 15
    time_masks: int = 2
    time_width: float = 0.05  # share of each utterance's frames
    save_minutes: float = 1.0
    seed: int = 0
    depthwise: str = "auto"  # "conv", "fft", or "auto": whichever trains faster, timed on the first batch


@dataclass(frozen=True)
class Clip:
    """An utterance's place in the decoded audio: file number, first sample, samples."""

    source: int
    start: int
    samples: int
    text: str


class AudioStore:
    """Every manifest's audio decoded once, float32 on the device (16 h: 3.7 GB)."""

    def __init__(self, manifests: list[str], device: torch.device, max_seconds: float):
        entries = [u for m in manifests for u in read_manifest(m, ENGLISH_LABELS, max_seconds)]
        files = list(dict.fromkeys(u.audio for u in entries))
        numbers = {audio: n for n, audio in enumerate(files)}
        with ThreadPoolExecutor(os.cpu_count()) as pool:  # libsndfile runs without the GIL
            self.sources = [torch.from_numpy(a).to(device) for a in pool.map(load_audio, files)]
        self.clips: list[Clip] = []
        for utterance in entries:
            source = self.sources[numbers[utterance.audio]]
            start = round((utterance.offset or 0.0) * SAMPLE_RATE)
            length = min(round(utterance.seconds * SAMPLE_RATE), len(source) - start)
            self.clips.append(Clip(numbers[utterance.audio], start, length, utterance.text))

    def utterances(self) -> list[Utterance]:
        """Stand-ins for duration_batches: the clip number as the path, so batches map back to clips."""
        return [Utterance(Path(str(n)), c.samples / SAMPLE_RATE, c.text) for n, c in enumerate(self.clips)]

    def audio(self, clip: Clip) -> torch.Tensor:
        return self.sources[clip.source][clip.start : clip.start + clip.samples]

    @property
    def hours(self) -> float:
        return sum(c.samples for c in self.clips) / SAMPLE_RATE / 3600


def change_speed(batch: torch.Tensor, factor: float) -> torch.Tensor:
    """batch [B, S] played factor times as fast: [B, round(S / factor)], by band-limited FFT resampling."""
    length = round(batch.shape[1] / factor)
    spectrum = torch.fft.rfft(batch, dim=1)
    bins = length // 2 + 1
    if bins <= spectrum.shape[1]:
        spectrum = spectrum[:, :bins]
    else:
        spectrum = torch.nn.functional.pad(spectrum, (0, bins - spectrum.shape[1]))
    return torch.fft.irfft(spectrum, n=length, dim=1) * (length / batch.shape[1])


def padded(pieces: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D tensors -> zero-padded [B, S_max] and lengths [B]."""
    lengths = torch.tensor([len(p) for p in pieces], device=pieces[0].device)
    return torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True), lengths


def speed_perturbed(store: AudioStore, clips: list[Clip], factors: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio [B, S] and lengths [B] of clips, each played at its speed factor (one resampling per factor)."""
    groups: dict[float, list[int]] = defaultdict(list)
    for index, factor in enumerate(factors):
        groups[factor].append(index)
    pieces: list[torch.Tensor] = [torch.empty(0)] * len(clips)
    for factor, indices in groups.items():
        audio, _ = padded([store.audio(clips[i]) for i in indices])
        if factor != 1.0:
            audio = change_speed(audio, factor)
        for row, i in enumerate(indices):
            pieces[i] = audio[row, : round(clips[i].samples / factor)]
    return padded(pieces)


def spec_augment(features: torch.Tensor, frames: torch.Tensor, settings: DeviceTrainSettings) -> torch.Tensor:
    """NeMo's SpecAugment on [B, n_mels, T]: per utterance, freq_masks bands of up to freq_width bins
    and time_masks spans of up to time_width of its frames, set to 0."""
    batch, bins, length = features.shape
    device = features.device
    keep = torch.ones(batch, bins, length, dtype=torch.bool, device=device)
    bin_index = torch.arange(bins, device=device)[None, :]
    for _ in range(settings.freq_masks):
        start = torch.randint(0, bins - settings.freq_width + 1, (batch, 1), device=device)
        width = torch.randint(0, settings.freq_width + 1, (batch, 1), device=device)
        keep &= ~((bin_index >= start) & (bin_index < start + width))[:, :, None]
    frame_index = torch.arange(length, device=device)[None, :]
    widest = torch.clamp((frames.float() * settings.time_width).long(), min=1)[:, None]
    for _ in range(settings.time_masks):
        start = (torch.rand(batch, 1, device=device) * torch.clamp(frames[:, None] - widest, min=1)).long()
        width = (torch.rand(batch, 1, device=device) * (widest + 1)).long()
        keep &= ~((frame_index >= start) & (frame_index < start + width))[:, None, :]
    return features * keep


class Trainer:
    def __init__(self, settings: DeviceTrainSettings, device: torch.device):
        self.settings, self.device = settings, device
        checkpoint = read_nemo(settings.init)
        self.net = ConvASR(checkpoint.config).to(device)
        self.net.load_state_dict(network_state(checkpoint.state))
        filterbank = checkpoint.state["preprocessor.featurizer.fb"].numpy()[0]
        window = checkpoint.state["preprocessor.featurizer.window"].numpy()
        self.front_end = LogMelFrontEnd(checkpoint.config["preprocessor"], filterbank, window).to(device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.blank = len(ENGLISH_LABELS)
        self.label_ids = {c: i for i, c in enumerate(ENGLISH_LABELS)}
        self.step, self.trained_s, self.seen_s = 0, 0.0, 0.0
        resumed = Path(settings.out) / STATE
        if resumed.exists():
            state = torch.load(resumed, map_location=device)
            self.net.load_state_dict(state["network"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.trained_s, self.seen_s = state["step"], state["trained_s"], state["seen_s"]

    def loss(
        self, store: AudioStore, clips: list[Clip], factors: list[float], net: ConvASR | None = None
    ) -> tuple[torch.Tensor, float]:
        """CTC loss of one batch (SpecAugment, dither and speed perturbation applied) and its seconds of audio."""
        audio, samples = speed_perturbed(store, clips, factors)
        audio = audio + self.settings.dither * torch.randn_like(audio)
        features, frames = self.front_end.features(audio, samples)
        features = spec_augment(features, frames, self.settings)
        log_probs, encoded_frames = (net or self.net)(features, frames)
        targets = torch.tensor([self.label_ids[c] for clip in clips for c in clip.text], device=self.device)
        target_lengths = torch.tensor([len(clip.text) for clip in clips], device=self.device)
        ctc = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1), targets, encoded_frames, target_lengths, blank=self.blank, zero_infinity=True
        )
        return ctc, float(samples.sum()) / SAMPLE_RATE

    def seconds_per_step(self, net: ConvASR, store: AudioStore, clips: list[Clip], repeats: int = 3) -> float:
        """Median wall time of a forward and backward pass of net on clips (no update), after a warm-up pass."""
        timings = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            loss = self.loss(store, clips, [1.0] * len(clips), net)[0]
            loss.backward()
            net.zero_grad()
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            timings.append(time.perf_counter() - start)
        return float(np.median(timings[1:]))

    def choose_depthwise(self, store: AudioStore, clips: list[Clip]) -> dict:
        """Keep cuDNN's depthwise convolutions or swap in the FFT form: by --depthwise, or the faster on clips."""
        choice, timings = self.settings.depthwise, {}
        if choice == "auto":
            probe = copy.deepcopy(self.net)
            use_fft_depthwise(probe)
            timings = {
                "conv": self.seconds_per_step(self.net, store, clips),
                "fft": self.seconds_per_step(probe, store, clips),
            }
            choice = min(timings, key=timings.get)
        if choice == "fft":
            use_fft_depthwise(self.net)
        return {"depthwise": choice, **{f"{k}_s_per_step": round(v, 4) for k, v in timings.items()}}

    def learning_rate(self) -> float:
        """Linear warm-up over warmup_steps, then linear decay to 0 at anneal_minutes of training (all runs)."""
        warmup = min(1.0, (self.step + 1) / self.settings.warmup_steps)
        anneal_s = 60 * (self.settings.anneal_minutes or self.settings.minutes)
        return self.settings.lr * warmup * max(0.0, 1.0 - self.trained_s / anneal_s)

    def save(self) -> None:
        """OUT/network.pt (the weights) and OUT/state.pt (what a resumed run needs), each written atomically."""
        state = {
            "network": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "trained_s": self.trained_s,
            "seen_s": self.seen_s,
        }
        for name, payload in ((NETWORK, state["network"]), (STATE, state)):
            path = Path(self.settings.out) / name
            torch.save(payload, path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)


def train(settings: DeviceTrainSettings) -> dict:
    """Train for settings.minutes of wall time (loading and timing not counted) or up to settings.steps;
    returns the last record."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    loading = time.monotonic()
    store = AudioStore(settings.manifests, device, settings.max_utterance_seconds)
    trainer = Trainer(settings, device)
    utterances = store.utterances()
    first = duration_batches(utterances, settings.batch_seconds, rng)[0]
    setup = trainer.choose_depthwise(store, [store.clips[int(u.audio.name)] for u in first])
    header = {"device": str(device), "audio_hours": round(store.hours, 3), "clips": len(store.clips)}
    header |= {"setup_s": round(time.monotonic() - loading, 1), **setup, "settings": asdict(settings)}
    print(json.dumps(header), flush=True)
    trainer.net.train()
    record: dict = {}
    start = last_save = time.monotonic()
    trained_before = trainer.trained_s
    with open(out / LOG, "a") as log:
        log.write(json.dumps(header) + "\n")
        while True:
            for batch in duration_batches(utterances, settings.batch_seconds, rng):
                trainer.trained_s = trained_before + time.monotonic() - start
                out_of_time = trainer.trained_s - trained_before > settings.minutes * 60
                if out_of_time or (settings.steps and trainer.step >= settings.steps):
                    trainer.save()
                    return record
                clips = [store.clips[int(u.audio.name)] for u in batch]
                factors = [rng.choice(speed_factors(settings.speed_range)) for _ in clips]
                rate = trainer.learning_rate()
                for group in trainer.optimizer.param_groups:
                    group["lr"] = rate
                loss, seconds = trainer.loss(store, clips, factors)
                trainer.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainer.net.parameters(), 1.0)
                trainer.optimizer.step()
                trainer.step += 1
                trainer.seen_s += seconds
                record = {
                    "step": trainer.step,
                    "loss": round(loss.item(), 4),
                    "lr": rate,
                    "audio_hours": round(trainer.seen_s / 3600, 3),
                    "trained_s": round(trainer.trained_s, 1),
                }
                log.write(json.dumps(record) + "\n")
                if trainer.step % 100 == 0:
                    log.flush()
                    print(json.dumps(record), flush=True)
                if time.monotonic() - last_save > settings.save_minutes * 60:
                    trainer.save()
                    last_save = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, help=".nemo whose config, front end and weights to start from")
    parser.add_argument("--manifest", action="append", required=True, help="NeMo manifest (repeatable)")
    parser.add_argument("--out", required=True)
    defaults = DeviceTrainSettings("", [], "")
    tunable = (
        "minutes",
        "steps",
        "anneal_minutes",
        "lr",
        "warmup_steps",
        "batch_seconds",
        "speed_range",
        "save_minutes",
        "seed",
        "depthwise",
    )
    for name in tunable:
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    settings = DeviceTrainSettings(args.init, args.manifest, args.out, **{n: getattr(args, n) for n in tunable})
    print(json.dumps(train(settings)))


if __name__ == "__main__":
    main()
