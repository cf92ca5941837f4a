import numpy as np
import pytest
import torch

from quantizer.features import LogMelFrontEnd, UnsupportedFrontEndError
from quantizer.pipeline import quantize_checkpoint
from quantizer.synthetic import SyntheticSettings


@pytest.fixture(scope="module")
def saved_model(quartznet_nemo, tmp_path_factory):
    cheap = SyntheticSettings(samples=2, frames=40, min_frames=40, iters=1, batch_size=2)
    model, _, _ = quantize_checkpoint(quartznet_nemo, cheap)
    folder = tmp_path_factory.mktemp("features")
    model.save(folder)
    return folder


def test_matches_nemos_preprocessor_on_a_padded_batch(quartznet_nemo, saved_model):
    from nemo.collections.asr.models import EncDecCTCModel

    from quantizer.integer_model import IntegerModel

    nemo_model = EncDecCTCModel.restore_from(str(quartznet_nemo), map_location="cpu").eval()
    model = IntegerModel.load(saved_model)  # the filterbank and window travel with the integer model
    front_end = LogMelFrontEnd(model.preprocessor, model.filterbank, model.window)
    rng = np.random.default_rng(0)
    samples = np.array([24000, 16001, 3300])
    audio = (rng.normal(size=(3, samples.max())) * 0.1).astype(np.float32)
    for b, n in enumerate(samples):
        audio[b, n:] = 0
    with torch.no_grad():
        expected, expected_frames = nemo_model.preprocessor(
            input_signal=torch.from_numpy(audio), length=torch.from_numpy(samples)
        )
    features, frames = front_end(audio, samples)
    np.testing.assert_array_equal(frames, expected_frames.numpy())
    assert features.shape == tuple(expected.shape) and features.shape[1] == front_end.bins
    assert np.abs(features - expected.numpy()).max() < 1e-4  # measured 1.5e-6 on 64 bins


def test_unsupported_preprocessor_settings_are_named(saved_model):
    from quantizer.integer_model import IntegerModel

    model = IntegerModel.load(saved_model)
    with pytest.raises(UnsupportedFrontEndError, match="normalize='all_features'"):
        LogMelFrontEnd(model.preprocessor | {"normalize": "all_features"}, model.filterbank, model.window)
