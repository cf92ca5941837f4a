"""Log-mel features equal to NeMo's AudioToMelSpectrogramPreprocessor in eval mode, without NeMo.

The mel filterbank and the window come from the checkpoint (NeMo stores both as buffers), so no
librosa is needed and the features match the model's own. Only NeMo's defaults that speech CTC
models use are supported: per-feature normalisation (or none), `log_zero_guard_type: add`,
`frame_splicing: 1`, `exact_pad: false`, `mag_power: 2`.
"""

from __future__ import annotations

import numpy as np
import torch

NORMALIZE_EPS = 1e-5  # NeMo's CONSTANT added to the per-feature std


class UnsupportedFrontEndError(ValueError):
    """The checkpoint's preprocessor uses a setting this front end does not reproduce."""


def pad_audio(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """float32 clips of any lengths -> zero-padded batch [B, S_max] and lengths in samples [B]."""
    samples = np.array([len(c) for c in clips], np.int64)
    padded = np.zeros((len(clips), samples.max()), np.float32)
    for b, clip in enumerate(clips):
        padded[b, : len(clip)] = clip
    return padded, samples


class LogMelFrontEnd:
    def __init__(self, preprocessor: dict, filterbank: np.ndarray, window: np.ndarray):
        """preprocessor: the checkpoint's `preprocessor` config; filterbank [n_mels, n_fft / 2 + 1]; window [win]."""
        checks = {
            "normalize": ("per_feature", None, "None"),
            "log_zero_guard_type": ("add",),
            "frame_splicing": (1,),
            "exact_pad": (False,),
            "mag_power": (2.0, 2),
            "log": (True,),
        }
        for key, allowed in checks.items():
            if key in preprocessor and preprocessor[key] not in allowed:
                raise UnsupportedFrontEndError(f"preprocessor {key}={preprocessor[key]!r} is not supported")
        self.sample_rate = int(preprocessor.get("sample_rate", 16000))
        self.hop = int(round(float(preprocessor.get("window_stride", 0.01)) * self.sample_rate))  # samples
        self.n_fft = int(preprocessor.get("n_fft") or 512)
        self.preemph = preprocessor.get("preemph", 0.97)
        self.guard = float(preprocessor.get("log_zero_guard_value", 2**-24))
        self.normalize = preprocessor.get("normalize", "per_feature") == "per_feature"
        self.pad_to = int(preprocessor.get("pad_to", 16))
        self.filterbank = torch.from_numpy(np.asarray(filterbank, np.float32).reshape(-1, self.n_fft // 2 + 1))
        self.window = torch.from_numpy(np.asarray(window, np.float32))

    @classmethod
    def of(cls, model) -> LogMelFrontEnd:
        """The front end stored with a model (an IntegerModel or FloatGraph: preprocessor, filterbank, window)."""
        return cls(model.preprocessor, model.filterbank, model.window)

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop

    @property
    def bins(self) -> int:
        return int(self.filterbank.shape[0])

    def to(self, device: torch.device | str) -> LogMelFrontEnd:
        """This front end with its filterbank and window on device (for `features`)."""
        self.filterbank, self.window = self.filterbank.to(device), self.window.to(device)
        return self

    def __call__(self, audio: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """audio float32 [B, S] (padded), samples [B] -> features float32 [B, n_mels, T], frames [B].

        Each clip is computed alone and then padded: float sums over a longer padded batch round
        differently in the last bit, which can move an integer model's input code, so a clip's
        transcript would otherwise depend on what it was batched with."""
        samples = np.asarray(samples, np.int64)
        clips = [
            self.features(
                torch.from_numpy(np.ascontiguousarray(audio[b : b + 1, : samples[b]], np.float32)),
                torch.from_numpy(samples[b : b + 1]),
            )
            for b in range(len(samples))
        ]
        features = np.zeros((len(clips), self.bins, max(f.shape[2] for f, _ in clips)), np.float32)
        for b, (clip_features, _) in enumerate(clips):
            features[b, :, : clip_features.shape[2]] = clip_features[0].numpy()
        return features, np.concatenate([frames.numpy() for _, frames in clips])

    @torch.no_grad()
    def features(self, x: torch.Tensor, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same on tensors, on the front end's device: x float32 [B, S], samples int64 [B].
        Valid frames are NeMo's get_seq_len."""
        frames = torch.div(samples + 2 * (self.n_fft // 2) - self.n_fft, self.hop, rounding_mode="floor")
        positions = torch.arange(x.shape[1], device=x.device)
        if self.preemph is not None:
            x = torch.cat((x[:, :1], x[:, 1:] - self.preemph * x[:, :-1]), dim=1)
            x = x.masked_fill(positions[None, :] >= samples[:, None], 0.0)
        spectrum = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=len(self.window),
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = torch.view_as_real(spectrum).pow(2).sum(-1)  # |X|^2 [B, n_fft / 2 + 1, T]
        features = torch.log(torch.matmul(self.filterbank, power) + self.guard)
        valid = torch.arange(features.shape[2], device=x.device)[None, :] < frames[:, None]  # [B, T]
        if self.normalize:
            count = valid.sum(1)[:, None]
            mean = torch.where(valid[:, None], features, 0.0).sum(2) / count
            centred = torch.where(valid[:, None], features - mean[:, :, None], 0.0)
            std = torch.sqrt(centred.pow(2).sum(2) / (count - 1.0)).nan_to_num(0.0) + NORMALIZE_EPS
            features = (features - mean[:, :, None]) / std[:, :, None]
        features = features.masked_fill(~valid[:, None], 0.0)
        if self.pad_to > 0 and features.shape[2] % self.pad_to:
            features = torch.nn.functional.pad(features, (0, self.pad_to - features.shape[2] % self.pad_to))
        return features, frames
