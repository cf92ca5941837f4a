"""A trainable QuartzNet/Jasper CTC network in plain PyTorch, with NeMo's state-dict keys.

For machines that have PyTorch but not NeMo (a lent GPU machine, say). The modules mirror NeMo's
ConvASREncoder and ConvASRDecoder: every convolution reads its input masked to the valid frames
(MaskedConv1d), BatchNorm1d with eps 1e-3, ReLU and dropout between repeats, one summed residual
per block. A state dict trained here loads into NeMo's EncDecCTCModel unchanged (plus the
preprocessor's two buffers) and the two agree in eval mode (tests/test_torch_quartznet.py).
Supported: what `quantizer.nemo_configs.quartznet_config` writes (separable or plain convs, one
plain residual), not JasperDR's dense residuals.
"""

from __future__ import annotations

import torch
from torch import nn

BN_EPS = 1e-3  # NeMo's JasperBlock


class MaskedConv1d(nn.Module):
    """NeMo's MaskedConv1d: zeroes the input beyond each utterance's length, convolves, updates lengths."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int, dilation: int, groups: int):
        super().__init__()
        if stride > 1 and dilation > 1:
            raise ValueError("NeMo does not combine stride and dilation")
        padding = dilation * (kernel - 1) // 2  # NeMo's get_same_padding
        self.conv = nn.Conv1d(channels_in, channels_out, kernel, stride, padding, dilation, groups, bias=False)

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C_in, T], frames [B] -> [B, C_out, T'], frames' [B]."""
        valid = torch.arange(x.shape[2], device=x.device)[None, :] < frames[:, None]
        x = self.conv(x * valid[:, None, :].to(x.dtype))
        (kernel,), (stride,), (padding,), (dilation,) = (
            self.conv.kernel_size,
            self.conv.stride,
            self.conv.padding,
            self.conv.dilation,
        )
        return x, torch.div(frames + 2 * padding - dilation * (kernel - 1) - 1, stride, rounding_mode="floor") + 1


def _conv_bn(channels_in: int, channels_out: int, block: dict) -> list[nn.Module]:
    """A separable conv (depthwise, then pointwise) or a plain one, then BatchNorm: NeMo's order."""
    kernel, stride, dilation = block["kernel"][0], block["stride"][0], block["dilation"][0]
    if block.get("separable", False):
        layers = [
            MaskedConv1d(channels_in, channels_in, kernel, stride, dilation, groups=channels_in),
            MaskedConv1d(channels_in, channels_out, 1, 1, 1, groups=1),
        ]
    else:
        layers = [MaskedConv1d(channels_in, channels_out, kernel, stride, dilation, groups=1)]
    return [*layers, nn.BatchNorm1d(channels_out, eps=BN_EPS)]


class JasperBlock(nn.Module):
    """R repeats of conv-BN (ReLU and dropout between them), plus a 1x1 conv-BN residual, then ReLU and dropout."""

    def __init__(self, channels_in: int, block: dict):
        super().__init__()
        if block.get("residual_dense", False):
            raise ValueError("dense residuals (JasperDR) are not supported")
        channels_out = block["filters"]
        layers: list[nn.Module] = []
        for repeat in range(block["repeat"]):
            if repeat:
                layers += [nn.ReLU(), nn.Dropout(block.get("dropout", 0.0))]
            layers += _conv_bn(channels_in if repeat == 0 else channels_out, channels_out, block)
        self.mconv = nn.ModuleList(layers)  # indices match NeMo's, so do the state-dict keys
        if block.get("residual", False):
            residual = {"kernel": [1], "stride": [1], "dilation": [1], "separable": False}
            self.res = nn.ModuleList([nn.ModuleList(_conv_bn(channels_in, channels_out, residual))])
        else:
            self.res = None
        self.mout = nn.Sequential(nn.ReLU(), nn.Dropout(block.get("dropout", 0.0)))

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, out_frames = x, frames
        for layer in self.mconv:
            if isinstance(layer, MaskedConv1d):
                out, out_frames = layer(out, out_frames)
            else:
                out = layer(out)
        if self.res is not None:
            for pane in self.res:
                residual = x
                for layer in pane:
                    residual = layer(residual, frames)[0] if isinstance(layer, MaskedConv1d) else layer(residual)
                out = out + residual
        return self.mout(out), out_frames


class Encoder(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        blocks, channels = [], config["feat_in"]
        for block in config["jasper"]:
            blocks.append(JasperBlock(channels, block))
            channels = block["filters"]
        self.encoder = nn.ModuleList(blocks)

    def forward(self, features: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.encoder:
            features, frames = block(features, frames)
        return features, frames


class Decoder(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.decoder_layers = nn.Sequential(nn.Conv1d(config["feat_in"], config["num_classes"] + 1, 1, bias=True))

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        """encoded [B, C, T] -> log-probabilities [B, T, labels + blank]."""
        return torch.log_softmax(self.decoder_layers(encoded).transpose(1, 2), dim=-1)


class ConvASR(nn.Module):
    """Encoder and CTC decoder of a NeMo EncDecCTCModel config (features in, not audio)."""

    def __init__(self, config: dict):
        super().__init__()
        self.encoder = Encoder(config["encoder"])
        self.decoder = Decoder(config["decoder"])

    def forward(self, features: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, n_mels, T], frames [B] -> log-probabilities [B, T', labels + blank], frames' [B]."""
        encoded, frames = self.encoder(features, frames)
        return self.decoder(encoded), frames


def network_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of a NeMo state dict that ConvASR holds (the preprocessor's buffers left out)."""
    return {k: v for k, v in state.items() if k.startswith(("encoder.", "decoder."))}
