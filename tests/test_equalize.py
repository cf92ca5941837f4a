import numpy as np
import pytest
import torch

from quantizer.checkpoint import read_nemo
from quantizer.equalize import MAX_GAIN, channel_peaks, channel_scales, equalize_channels
from quantizer.graph import FEATURES, ConvTerm, FloatGraph, FloatModel, Node, build_float_graph
from quantizer.pipeline import CalibrationSettings, quantize_checkpoint
from quantizer.reference import argmax_tokens, quantize_features, run_integer
from quantizer.simulate import simulate
from quantizer.synthetic import SyntheticSettings, generate
from tests.toy_speech import ToySpeech

CHEAP = SyntheticSettings(samples=4, frames=90, min_frames=50, iters=20, batch_size=4)


@pytest.fixture(scope="module", params=["quartznet_nemo", "jasperdr_nemo"])
def graph_and_inputs(request):
    graph = build_float_graph(read_nemo(request.getfixturevalue(request.param)))
    data = generate(FloatModel(graph), CHEAP)
    return graph, data.features, data.lengths


def test_channel_scales_keep_the_loudest_channel_and_bound_the_gain():
    peaks = np.array([8.0, 2.0, 0.5, 0.0])
    scales = channel_scales(peaks, 0.5)
    assert scales[0] == 1.0
    np.testing.assert_allclose(scales[1:], [0.5, 0.25, 0.25])  # 0.5 and 0 are raised at most MAX_GAIN = 16x
    assert MAX_GAIN == 16
    np.testing.assert_array_equal(channel_scales(peaks, 0.0), np.ones(4))
    np.testing.assert_array_equal(channel_scales(np.zeros(3), 1.0), np.ones(3))


@pytest.mark.parametrize("strength", [0.25, 1.0])
def test_equalization_keeps_the_float_function(graph_and_inputs, strength):
    graph, features, lengths = graph_and_inputs
    equalized = equalize_channels(graph, channel_peaks(FloatModel(graph), features, lengths), strength)
    x, x_lengths = torch.from_numpy(features), torch.from_numpy(lengths)
    with torch.no_grad():
        before, _ = FloatModel(graph)(x, x_lengths)
        after, _ = FloatModel(equalized)(x, x_lengths)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4 * float(before.abs().max()))
    assert not np.array_equal(graph.nodes[0].terms[0].weight, equalized.nodes[0].terms[0].weight)


def test_equalization_narrows_each_tensors_channel_peaks_by_the_strength(graph_and_inputs):
    """On the inputs it was measured on, channel c's peak p becomes p^(1-a) max^a (within MAX_GAIN)."""
    graph, features, lengths = graph_and_inputs
    peaks = channel_peaks(FloatModel(graph), features, lengths)
    equalized_peaks = channel_peaks(FloatModel(equalize_channels(graph, peaks, 0.5)), features, lengths)
    for node in graph.nodes[:-1]:
        before, after = peaks[node.name], equalized_peaks[node.name]
        top = before.max()
        raised = before >= top / MAX_GAIN
        np.testing.assert_allclose(after[raised], np.sqrt(before[raised] * top), rtol=1e-4)
        assert after.max() == pytest.approx(top, rel=1e-5)
    np.testing.assert_allclose(equalized_peaks[graph.output], peaks[graph.output], rtol=1e-4)


def test_the_integer_model_of_an_equalized_graph_stays_exact_and_close(quartznet_nemo):
    calibration = CalibrationSettings(eval_samples=2, equalize=0.5)
    model, _, graph = quantize_checkpoint(quartznet_nemo, CHEAP, calibration=calibration)
    assert model.settings["calibration"]["equalize"] == 0.5
    features, lengths, _, _ = ToySpeech(bins=16, labels=len(model.labels), seed=2).batch(16)
    codes = quantize_features(features.numpy(), model)
    reference, out_lengths, _ = run_integer(model, codes, lengths.numpy())
    simulated, _ = simulate(model, codes, lengths.numpy())
    np.testing.assert_array_equal(reference, simulated)
    with torch.no_grad():
        logits, _ = FloatModel(graph)(features, lengths)
    valid = np.arange(reference.shape[2])[None, :] < out_lengths[:, None]
    assert (argmax_tokens(reference) == logits.argmax(1).numpy())[valid].mean() >= 0.95


def test_equalization_strength_is_validated():
    with pytest.raises(ValueError, match="between 0 and 1"):
        CalibrationSettings(equalize=1.5)


def test_a_grouped_reader_that_is_not_depthwise_is_refused():
    rng = np.random.default_rng(0)

    def term(source, shape, groups=1):
        weight = rng.normal(size=shape).astype(np.float32)
        return ConvTerm(source, weight, np.zeros(shape[0], np.float32), groups=groups)

    graph = FloatGraph(
        feat_in=4,
        nodes=[
            Node("a", [term(FEATURES, (4, 4, 1))], relu=True),
            Node("b", [term("a", (4, 2, 3), groups=2)], relu=True),
            Node("decoder", [term("b", (3, 4, 1))], relu=False),
        ],
        labels=["x", "y"],
    )
    peaks = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.ones(4), "decoder": np.ones(3)}
    with pytest.raises(ValueError, match="grouped conv"):
        equalize_channels(graph, peaks, 0.5)
