"""Zero-shot calibration inputs: features optimised so that every BatchNorm sees its own statistics.

Q-ASR's loss, per BN layer and channel, is the KL divergence between the Gaussian of the BN
running statistics (mu_bn, sigma_bn) and that of the batch statistics (mu_s, sigma_s) of the
conv output feeding it:

    log(sigma_s / sigma_bn) + (sigma_bn^2 + (mu_bn - mu_s)^2) / (2 sigma_s^2) - 1/2

Beyond the paper (each switchable, measured in the README):
- `min_frames < frames`: varied lengths in a batch, statistics over valid frames only;
- `per_sample`: statistics per utterance (over time) as well as pooled over the batch;
- `input_prior`: inputs are per-feature normalised by construction (zero mean, unit variance
  per mel bin and utterance), as NeMo's `normalize: per_feature` front end guarantees;
- `speech_like_start`: the optimisation starts from noise smoothed over time and mel bins, plus
  one slow loudness envelope shared by all bins, instead of white noise. Log-mel features of
  speech are smooth in both directions and rise and fall together with loudness; white noise is
  neither, and its activations' ranges missed real speech's by up to 3x in the middle blocks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from quantizer.graph import FloatModel, valid_mask

NORMALIZE_EPS = 1e-5  # NeMo's per-feature normalisation constant
STD_FLOOR = 1e-4  # keeps log(sigma) finite for dead channels
PAPER_INIT = 0.3  # the paper's inputs start uniform in [-0.3, 0.3]
UNIT_UNIFORM = 3**0.5  # uniform in [-sqrt(3), sqrt(3)] has unit variance
# The speech-like start: Gaussian smoothing widths (standard deviations) and the envelope's weight.
TEXTURE_FRAMES = 2.0  # over time, 10 ms frames
TEXTURE_BINS = 1.5  # over mel bins
ENVELOPE_FRAMES = 6.0  # the loudness envelope shared by all bins
ENVELOPE_WEIGHT = 1.0  # relative to the texture (both unit variance before mixing)


@dataclass(frozen=True)
class SyntheticSettings:
    samples: int = 8
    frames: int = 300  # longest input, 10 ms feature frames
    min_frames: int = 150  # shortest input; == frames gives the paper's fixed length
    iters: int = 100  # Adam steps per batch
    batch_size: int = 8
    lr: float = 0.05
    per_sample: bool = False
    input_prior: bool = True
    speech_like_start: bool = True
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.min_frames <= self.frames:
            raise ValueError(f"need 1 <= min_frames <= frames, got {self.min_frames} and {self.frames}")
        if self.samples < 1 or self.batch_size < 1 or self.iters < 0:
            raise ValueError("samples and batch_size must be positive, iters non-negative")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SyntheticData:
    features: np.ndarray  # float32 [N, F, frames]
    lengths: np.ndarray  # int64 [N]
    initial_loss: float  # mean BN-statistics loss of the starting points
    final_loss: float  # after optimisation


def _gaussian_kl(mu_s, sigma_s, mu_bn, sigma_bn) -> torch.Tensor:
    return torch.log(sigma_s / sigma_bn) + (sigma_bn**2 + (mu_bn - mu_s) ** 2) / (2 * sigma_s**2) - 0.5


def gaussian_smooth(x: torch.Tensor, sigma: float, dim: int) -> torch.Tensor:
    """Gaussian blur of x along one dimension (zero padding, same length)."""
    radius = int(3 * sigma)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype) / sigma) ** 2)
    moved = x.movedim(dim, -1)
    rows = moved.reshape(-1, 1, moved.shape[-1])
    blurred = torch.nn.functional.conv1d(rows, (taps / taps.sum())[None, None], padding=radius)
    return blurred.reshape(moved.shape).movedim(-1, dim)


def speech_like_noise(size: int, bins: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """[size, bins, frames], unit variance: smooth texture plus a shared loudness envelope."""
    white = torch.rand(size, bins, frames, generator=generator) * 2 - 1
    texture = gaussian_smooth(gaussian_smooth(white, TEXTURE_FRAMES, 2), TEXTURE_BINS, 1)
    envelope = gaussian_smooth(torch.rand(size, 1, frames, generator=generator) * 2 - 1, ENVELOPE_FRAMES, 2)
    mixed = texture / texture.std() + ENVELOPE_WEIGHT * envelope / envelope.std()
    return mixed / mixed.std()


def per_feature_normalize(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """NeMo's per-feature normalisation over valid frames; padded frames become zero. x: [B, F, T]."""
    mask = valid_mask(lengths, x.shape[2])[:, None, :].to(x.dtype)
    count = lengths[:, None, None].to(x.dtype)
    mean = (x * mask).sum(2, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(2, keepdim=True) / (count - 1).clamp(min=1)
    return (x - mean) / (var.sqrt() + NORMALIZE_EPS) * mask


class BatchNormStatisticsLoss:
    """Mean over BN layers of the mean over channels of the Gaussian KL (one term per BN)."""

    def __init__(self, model: FloatModel, per_sample: bool):
        self.model = model
        self.per_sample = per_sample
        self.targets = {
            (i, j): (torch.from_numpy(t.bn_mean).double(), torch.from_numpy(t.bn_std).double().clamp(min=STD_FLOOR))
            for i, node in enumerate(model.graph.nodes)
            for j, t in enumerate(node.terms)
            if t.bn_mean is not None
        }

    def __call__(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        losses = []

        def on_term(i, j, y, out_lengths):
            if (i, j) not in self.targets:
                return
            mu_bn, sigma_bn = self.targets[(i, j)]
            mask = valid_mask(out_lengths, y.shape[2])[:, None, :].to(y.dtype)  # [B, 1, T]
            y = y.double()
            count = mask.sum()
            mu = (y * mask).sum((0, 2)) / count
            sigma = ((((y - mu[None, :, None]) * mask) ** 2).sum((0, 2)) / count).sqrt().clamp(min=STD_FLOOR)
            loss = _gaussian_kl(mu, sigma, mu_bn, sigma_bn).mean()
            if self.per_sample:
                frames = mask.sum(2)  # [B, 1]
                mu_b = (y * mask).sum(2) / frames
                sigma_b = ((((y - mu_b[:, :, None]) * mask) ** 2).sum(2) / frames).sqrt().clamp(min=STD_FLOOR)
                loss = loss + _gaussian_kl(mu_b, sigma_b, mu_bn[None], sigma_bn[None]).mean()
            losses.append(loss)

        self.model(features, lengths, on_term=on_term)
        return torch.stack(losses).mean()


def generate(model: FloatModel, settings: SyntheticSettings, progress: bool = False) -> SyntheticData:
    """Optimise `settings.samples` inputs in batches; deterministic for a seed."""
    if not any(t.bn_mean is not None for n in model.graph.nodes for t in n.terms):
        raise ValueError("the model has no BatchNorm statistics to match: zero-shot calibration needs them")
    generator = torch.Generator().manual_seed(settings.seed)
    loss_fn = BatchNormStatisticsLoss(model, settings.per_sample)
    feats, lens, initial, final = [], [], [], []
    batches = math.ceil(settings.samples / settings.batch_size)
    bar = tqdm(total=batches * settings.iters, desc="synthetic data", unit="step", disable=not progress)
    for b in range(batches):
        size = min(settings.batch_size, settings.samples - b * settings.batch_size)
        lengths = torch.randint(settings.min_frames, settings.frames + 1, (size,), generator=generator)
        lengths[0] = settings.frames  # the batch spans the full width
        if settings.speech_like_start:
            raw = speech_like_noise(size, model.graph.feat_in, settings.frames, generator) / UNIT_UNIFORM
        else:
            raw = torch.rand(size, model.graph.feat_in, settings.frames, generator=generator) * 2 - 1
        # The paper starts from uniform [-0.3, 0.3]; behind the normalising prior the start's scale is
        # free, and a unit one keeps Adam's steps (lr) small relative to it (0.05 at scale 0.17 diverged
        # on QuartzNet-15x5). Either start has the standard deviation of that uniform noise.
        raw = raw * (UNIT_UNIFORM if settings.input_prior else PAPER_INIT)
        raw.requires_grad_(True)

        def shaped(raw=raw, lengths=lengths):
            if settings.input_prior:
                return per_feature_normalize(raw, lengths)
            return raw * valid_mask(lengths, raw.shape[2])[:, None, :].to(raw.dtype)

        optimizer = torch.optim.Adam([raw], lr=settings.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(settings.iters, 1))
        with torch.no_grad():
            initial.append(loss_fn(shaped(), lengths).item())
        for _ in range(settings.iters):
            optimizer.zero_grad()
            loss = loss_fn(shaped(), lengths)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        with torch.no_grad():
            features = shaped()
            final.append(loss_fn(features, lengths).item())
        feats.append(features.detach().numpy().astype(np.float32))
        lens.append(lengths.numpy())
    bar.close()
    return SyntheticData(
        features=np.concatenate(feats),
        lengths=np.concatenate(lens).astype(np.int64),
        initial_loss=float(np.mean(initial)),
        final_loss=float(np.mean(final)),
    )
