import numpy as np
import pytest
import torch

from quantizer.graph import ConvTerm
from quantizer.pipeline import CalibrationSettings, quantize_checkpoint
from quantizer.quantize import quantize_weight
from quantizer.rounding import term_gram
from tests.test_quantize import CALIBRATION


def correlated_inputs(seed: int, channels: int, frames: int = 400) -> torch.Tensor:
    """ReLU outputs [2, C, T] driven by a few shared sources, smooth in time, like a conv layer's."""
    generator = torch.Generator().manual_seed(seed)
    sources = torch.randn(2, 4, frames, generator=generator, dtype=torch.float64)
    smooth = torch.nn.functional.avg_pool1d(sources, 5, 1, 2)
    mixing = torch.randn(channels, 4, generator=generator, dtype=torch.float64)
    noise = 0.1 * torch.randn(2, channels, frames, generator=generator, dtype=torch.float64)
    return torch.relu(torch.einsum("ck,bkt->bct", mixing, smooth) + noise)


def term(weight: np.ndarray, groups: int = 1, **geometry) -> ConvTerm:
    return ConvTerm("x", weight.astype(np.float32), np.zeros(weight.shape[0], np.float32), groups=groups, **geometry)


def output_error(t: ConvTerm, codes: np.ndarray, scale: np.ndarray, x: torch.Tensor) -> float:
    def conv(w):
        return torch.nn.functional.conv1d(x, torch.from_numpy(w), None, t.stride, t.padding, t.dilation, t.groups)

    dequantized = codes.astype(np.float64) * scale[:, None, None]
    return float(((conv(dequantized) - conv(t.weight.astype(np.float64))) ** 2).sum())


CONVS = {
    "pointwise": dict(shape=(24, 16, 1)),
    "strided pointwise": dict(shape=(24, 16, 1), stride=2),
    "depthwise": dict(shape=(16, 1, 9), groups=16, padding=8, dilation=2),
    "strided depthwise": dict(shape=(16, 1, 7), groups=16, padding=3, stride=2),
    "full kernel 3": dict(shape=(24, 16, 3), padding=1),
}


@pytest.mark.parametrize("kind", CONVS)
def test_compensated_codes_cut_the_output_error_on_the_inputs_they_saw(kind):
    geometry = dict(CONVS[kind])
    shape = geometry.pop("shape")
    t = term(np.random.default_rng(1).normal(size=shape), **geometry)
    x = correlated_inputs(2, shape[0] if t.groups > 1 else shape[1])
    nearest, scale = quantize_weight(t.weight, bits=4)
    compensated, same_scale = quantize_weight(t.weight, 4, term_gram(x, t), t.groups)
    np.testing.assert_array_equal(scale, same_scale)
    assert compensated.dtype == np.int8 and np.abs(compensated).max() <= 7
    assert output_error(t, compensated, scale, x) < 0.9 * output_error(t, nearest, scale, x)


@pytest.mark.parametrize("kind", ["pointwise", "depthwise"])
def test_white_inputs_leave_nothing_to_compensate(kind):
    geometry = dict(CONVS[kind])
    shape = geometry.pop("shape")
    t = term(np.random.default_rng(3).normal(size=shape), **geometry)
    identity = np.eye(shape[2] if t.groups > 1 else shape[1])
    gram = np.broadcast_to(identity, (shape[0], *identity.shape)) if t.groups > 1 else identity
    nearest, _ = quantize_weight(t.weight, bits=8)
    np.testing.assert_array_equal(quantize_weight(t.weight, 8, np.ascontiguousarray(gram), t.groups)[0], nearest)


@pytest.mark.parametrize("kind", ["strided pointwise", "depthwise", "strided depthwise"])
def test_gram_gives_the_output_energy_of_every_row(kind):
    """w G w^T = sum over frames of the conv output squared: G sees the frames and taps the conv reads."""
    geometry = dict(CONVS[kind])
    shape = geometry.pop("shape")
    t = term(np.random.default_rng(4).normal(size=shape), **geometry)
    x = correlated_inputs(5, shape[0] if t.groups > 1 else shape[1], frames=101)
    gram, w = term_gram(x, t), t.weight.astype(np.float64)
    energy = (
        np.einsum("ck,ckl,cl->c", w[:, 0], gram, w[:, 0])
        if t.groups > 1
        else np.einsum("oi,ij,oj->o", w[:, :, 0], gram, w[:, :, 0])
    )
    output = torch.nn.functional.conv1d(x, torch.from_numpy(w), None, t.stride, t.padding, t.dilation, t.groups)
    np.testing.assert_allclose(energy, (output**2).sum(dim=(0, 2)).numpy(), rtol=1e-9)


def test_a_grouped_conv_that_is_not_depthwise_is_refused():
    with pytest.raises(ValueError, match="grouped conv"):
        term_gram(torch.zeros(1, 8, 10), term(np.ones((8, 2, 3)), groups=4, padding=1))


def test_unknown_rounding_is_refused():
    with pytest.raises(ValueError, match="weight rounding"):
        CalibrationSettings(rounding="stochastic")


def test_compensated_rounding_brings_the_integer_logits_closer_to_fp32(quartznet_nemo):
    """On held-out synthetic inputs (the report's), not the ones the Gram matrices came from."""
    sqnr = {}
    for rounding in ("nearest", "gptq"):
        calibration = CalibrationSettings(eval_samples=4, rounding=rounding)
        model, report, _ = quantize_checkpoint(quartznet_nemo, CALIBRATION, calibration=calibration)
        assert report["settings"]["calibration"]["rounding"] == rounding
        sqnr[rounding] = report["layers"][-1]["sqnr_db"]
    assert sqnr["gptq"] > sqnr["nearest"]
