"""The published architectures end to end, with random weights and randomised BN statistics."""

import numpy as np
import pytest

from quantizer.nemo_configs import quartznet_config, save_nemo_model
from quantizer.onnx_export import INTEGER_BACKENDS, write_backends
from quantizer.pipeline import CalibrationSettings, quantize_checkpoint
from quantizer.reference import quantize_features, run_integer
from quantizer.runtime import Recognizer
from quantizer.simulate import simulate
from quantizer.synthetic import SyntheticSettings


@pytest.mark.slow
def test_quartznet_15x5_quantizes_and_every_integer_executor_is_bit_exact(tmp_path):
    path = save_nemo_model(quartznet_config(), tmp_path / "quartznet15x5.nemo", seed=0)
    settings = SyntheticSettings(samples=4, frames=200, min_frames=100, iters=20, batch_size=4)
    model, report, graph = quantize_checkpoint(path, settings, calibration=CalibrationSettings(eval_samples=2))
    # NeMo counts 18,924,381; folding turns each BN channel's gamma and beta into one bias (7,616 channels)
    assert report["parameters"] == 18_924_381 - 7_616
    assert 3.8 < report["size"]["compression"] <= 4.0
    assert report["synthetic"]["final_loss"] < report["synthetic"]["initial_loss"]
    features = np.random.default_rng(0).normal(size=(2, 64, 120)).astype(np.float32)
    lengths = np.array([120, 77])
    codes = quantize_features(features, model)
    reference, reference_lengths, _ = run_integer(model, codes, lengths)
    simulated, _ = simulate(model, codes, lengths)
    np.testing.assert_array_equal(reference_lengths, [60, 39])
    np.testing.assert_array_equal(reference, simulated)
    model.save(tmp_path)
    sizes = write_backends(tmp_path, model, graph)
    assert sizes["fp32"] / sizes["int8"] > 3.9 and sizes["fp32"] / sizes["integer"] > 3.8
    for backend in INTEGER_BACKENDS:
        result = Recognizer(tmp_path, backend)(features, lengths, with_logits=True)
        np.testing.assert_array_equal(result.logits, reference)
