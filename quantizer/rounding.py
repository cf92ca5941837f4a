"""Error-compensating weight rounding (GPTQ, Frantar et al. 2023) on the synthetic calibration inputs.

Rounding each int8 weight to its nearest code is what cost the integer model most of its WER
drift on recorded speech (README, "Where the drift comes from"). GPTQ rounds the input columns of
a weight row one at a time and spreads each rounding error over the columns not yet rounded, so
that the conv's output error ||(W_q - W) x||^2 is small on the inputs x the layer sees, not the
weight error itself. What the layer sees is summarised by the Gram matrix of its inputs,
G = sum_t x_t x_t^T, measured here on the same synthetic inputs that calibrate the ranges, so the
method stays zero-shot. The scales and the integer semantics are unchanged: only codes move.

Per conv kind:
- full conv, kernel 1 (pointwise, residual panes, decoder): G over input channels [C_in, C_in];
- depthwise: one G per channel over its kernel taps [C, K, K];
- full conv, kernel > 1 (Jasper): the pointwise G, compensating within each tap only, so G stays
  [C_in, C_in] however wide the kernel (for a stationary input every tap sees the same G).
"""

from __future__ import annotations

import numpy as np
import torch

from quantizer.graph import FEATURES, ConvTerm, FloatModel, input_batches, valid_mask

DAMPING = 0.01  # added to G's diagonal, as a fraction of its mean: keeps G invertible


def _unfold_taps(x: torch.Tensor, term: ConvTerm) -> torch.Tensor:
    """x [B, C, T] -> the samples each output frame's taps read, [B, C, T', K]."""
    padded = torch.nn.functional.pad(x, (term.padding, term.padding))
    span = term.dilation * (term.kernel - 1) + 1
    return padded.unfold(2, span, term.stride)[..., :: term.dilation]


def term_gram(x: torch.Tensor, term: ConvTerm) -> np.ndarray:
    """Gram matrix of one term's input x [B, C_in, T] (padded frames zeroed): [C, K, K] for a
    depthwise conv, else [C_in, C_in] over the frames the conv reads (every stride-th)."""
    if term.depthwise:
        taps = _unfold_taps(x, term)
        return torch.einsum("bctk,bctl->ckl", taps, taps).double().numpy()
    if term.groups != 1:
        raise ValueError(f"cannot compensate the rounding of a grouped conv (groups {term.groups})")
    frames = x[:, :, :: term.stride] if term.kernel == 1 else x
    columns = frames.permute(1, 0, 2).reshape(x.shape[1], -1)
    return (columns @ columns.T).double().numpy()


@torch.no_grad()
def input_grams(
    model: FloatModel, features: np.ndarray, lengths: np.ndarray, batch_size: int = 8
) -> dict[tuple[int, int], np.ndarray]:
    """Gram matrix of every term's input on the calibration inputs, keyed (node index, term index)."""
    graph = model.graph
    readers: dict[str, list[tuple[int, int]]] = {}
    for i, node in enumerate(graph.nodes):
        for j, term in enumerate(node.terms):
            readers.setdefault(term.source, []).append((i, j))
    grams: dict[tuple[int, int], np.ndarray] = {}

    def observe(name, y, out_lengths):
        masked = y * valid_mask(out_lengths, y.shape[2])[:, None, :].to(y.dtype)
        for i, j in readers.get(name, []):
            gram = term_gram(masked, graph.nodes[i].terms[j])
            grams[(i, j)] = grams[(i, j)] + gram if (i, j) in grams else gram

    for x, x_lengths in input_batches(features, lengths, batch_size):
        observe(FEATURES, x, x_lengths)
        model(x, x_lengths, on_node=observe)
    return grams


def _upper_inverse_cholesky(gram: torch.Tensor) -> torch.Tensor:
    """The upper Cholesky factor of the damped G^-1 (batched over leading dims): GPTQ's update rows."""
    gram = gram.clone()
    diagonal = torch.diagonal(gram, dim1=-2, dim2=-1)
    diagonal += DAMPING * diagonal.mean(-1, keepdim=True) + 1e-12
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    return torch.linalg.cholesky(inverse, upper=True)


def _compensated_rows(weight: torch.Tensor, scale: torch.Tensor, gram: torch.Tensor, limit: int) -> torch.Tensor:
    """weight [R, N] float64, scale [R], gram [N, N] shared or [R, N, N] per row -> codes [R, N]."""
    remaining = weight.clone()
    update = _upper_inverse_cholesky(gram)
    if update.dim() == 2:
        update = update.expand(weight.shape[0], -1, -1)
    codes = torch.zeros_like(weight)
    for n in range(weight.shape[1]):
        codes[:, n] = torch.clamp(torch.round(remaining[:, n] / scale), -limit, limit)
        error = (remaining[:, n] - codes[:, n] * scale) / update[:, n, n]
        remaining[:, n + 1 :] -= error[:, None] * update[:, n, n + 1 :]
    return codes


def compensated_codes(weight: np.ndarray, scale: np.ndarray, gram: np.ndarray, groups: int, limit: int) -> np.ndarray:
    """GPTQ codes of a conv weight [C_out, C_in / groups, K] at per-output-channel scale [C_out],
    clipped to [-limit, limit], for the input Gram matrix of `term_gram`."""
    w = torch.from_numpy(weight.astype(np.float64))
    s, g = torch.from_numpy(scale), torch.from_numpy(gram)
    if groups > 1:  # depthwise: each channel's row is its K taps
        return _compensated_rows(w[:, 0, :], s, g, limit)[:, None, :].numpy()
    taps = [_compensated_rows(w[:, :, k], s, g, limit) for k in range(w.shape[2])]
    return torch.stack(taps, dim=2).numpy()
