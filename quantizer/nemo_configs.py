"""NeMo model configs for the supported families, written out by hand (no config ships with NeMo).

`quartznet_config(...)` follows NeMo's `quartznet_15x5.yaml`: a stride-2 prologue, B groups of
blocks with R repeats each, and a dilated epilogue. `jasperdr_config(...)` follows
`jasper10x5dr.yaml`: non-separable convs with dense residual panes. Small settings of both make
test models; the defaults are the published architectures.
"""

from __future__ import annotations

from pathlib import Path

# 28 characters: space, a-z, apostrophe (blank is added by the decoder).
ENGLISH_LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]


def _block(
    filters: int,
    repeat: int,
    kernel: int,
    stride: int = 1,
    dilation: int = 1,
    residual: bool = True,
    separable: bool = True,
    dense: bool = False,
    dropout: float = 0.0,
) -> dict:
    block = dict(
        filters=filters,
        repeat=repeat,
        kernel=[kernel],
        stride=[stride],
        dilation=[dilation],
        dropout=dropout,
        residual=residual,
        separable=separable,
    )
    if dense:
        block["residual_dense"] = True
    return block


def preprocessor_config(features: int = 64, sample_rate: int = 16000) -> dict:
    return {
        "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
        "sample_rate": sample_rate,
        "normalize": "per_feature",
        "window_size": 0.02,
        "window_stride": 0.01,
        "window": "hann",
        "features": features,
        "n_fft": 512,
        "frame_splicing": 1,
        "dither": 1e-5,
    }


def _model_config(blocks: list[dict], features: int, labels: list[str]) -> dict:
    return {
        "sample_rate": 16000,
        "labels": list(labels),
        "preprocessor": preprocessor_config(features),
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConvASREncoder",
            "feat_in": features,
            "activation": "relu",
            "conv_mask": True,
            "jasper": blocks,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
            "feat_in": blocks[-1]["filters"],
            "num_classes": len(labels),
            "vocabulary": list(labels),
        },
    }


def quartznet_config(
    groups: tuple[int, ...] = (256, 256, 512, 512, 512),
    kernels: tuple[int, ...] = (33, 39, 51, 63, 75),
    blocks_per_group: int = 3,
    repeat: int = 5,
    prologue: tuple[int, int] = (256, 33),
    epilogue: tuple[int, int, int] = (512, 87, 1024),
    features: int = 64,
    labels: list[str] = ENGLISH_LABELS,
    dropout: float = 0.0,
) -> dict:
    """QuartzNet BxR: defaults give QuartzNet-15x5 (18.9 M parameters)."""
    blocks = [_block(prologue[0], 1, prologue[1], stride=2, residual=False, dropout=dropout)]
    for channels, kernel in zip(groups, kernels, strict=True):
        blocks += [_block(channels, repeat, kernel, dropout=dropout) for _ in range(blocks_per_group)]
    blocks.append(_block(epilogue[0], 1, epilogue[1], dilation=2, residual=False, dropout=dropout))
    blocks.append(_block(epilogue[2], 1, 1, residual=False, separable=False, dropout=dropout))
    return _model_config(blocks, features, labels)


def jasperdr_config(
    groups: tuple[int, ...] = (256, 384, 512, 640, 768),
    kernels: tuple[int, ...] = (11, 13, 17, 21, 25),
    blocks_per_group: int = 2,
    repeat: int = 5,
    prologue: tuple[int, int] = (256, 11),
    epilogue: tuple[int, int, int] = (896, 29, 1024),
    features: int = 64,
    labels: list[str] = ENGLISH_LABELS,
) -> dict:
    """Jasper DR BxR (dense residual): defaults give JasperDR-10x5 (332.6 M parameters)."""
    blocks = [_block(prologue[0], 1, prologue[1], stride=2, residual=False, separable=False)]
    for channels, kernel in zip(groups, kernels, strict=True):
        blocks += [_block(channels, repeat, kernel, separable=False, dense=True) for _ in range(blocks_per_group)]
    blocks.append(_block(epilogue[0], 1, epilogue[1], dilation=2, residual=False, separable=False))
    blocks.append(_block(epilogue[2], 1, 1, residual=False, separable=False))
    return _model_config(blocks, features, labels)


def build_nemo_model(config: dict, seed: int = 0, realistic_batch_norm: bool = True):
    """A NeMo EncDecCTCModel from a config (imports NeMo), in eval mode.

    With realistic_batch_norm, BatchNorm affine parameters are randomised and the running
    statistics are then measured on random inputs correlated across mel bins and smooth in time
    (per-feature normalised, like speech features), as training would leave them: consistent
    with the weights, not the identity, and unlike white noise.
    """
    import torch
    from nemo.collections.asr.models import EncDecCTCModel
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    model = EncDecCTCModel(cfg=OmegaConf.create(config))
    if realistic_batch_norm:
        generator = torch.Generator().manual_seed(seed)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
        with torch.no_grad():
            for norm in norms:
                norm.weight.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(norm.num_features, generator=generator) * 0.3)
                norm.reset_running_stats()
                norm.momentum = None  # cumulative average over the batches below
            model.encoder.train()
            bins = config["encoder"]["feat_in"]
            mixing = torch.randn(bins, bins, generator=generator) / bins**0.5 + torch.eye(bins)
            for _ in range(4):
                features = mixing @ torch.randn(8, bins, 120, generator=generator)
                features = torch.nn.functional.avg_pool1d(features, 9, stride=1, padding=4)
                features = (features - features.mean(2, keepdim=True)) / features.std(2, keepdim=True)
                model.encoder(audio_signal=features, length=torch.full((8,), 120))
    return model.eval()


def save_nemo_model(config: dict, path: str | Path, seed: int = 0) -> Path:
    """Build a randomly initialised model of `config` and save it as a `.nemo` file."""
    path = Path(path)
    build_nemo_model(config, seed).save_to(str(path))
    return path
