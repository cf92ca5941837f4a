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


def test_a_clip_gets_the_same_features_bit_for_bit_in_any_batch(saved_model):
    """Batched float sums round differently in the last bit, which can move an integer input code
    and so a transcript: each clip's features must not depend on its batch companions."""
    from quantizer.integer_model import IntegerModel

    front_end = LogMelFrontEnd.of(IntegerModel.load(saved_model))
    rng = np.random.default_rng(1)
    clips = [(rng.normal(size=n) * scale).astype(np.float32) for n, scale in ((117_000, 0.05), (240_000, 0.3))]
    alone, alone_frames = front_end(clips[0][None, :], np.array([len(clips[0])]))
    batch = np.zeros((2, len(clips[1])), np.float32)
    batch[0, : len(clips[0])], batch[1] = clips
    together, frames = front_end(batch, np.array([len(c) for c in clips]))
    n = int(alone_frames[0])
    assert frames[0] == n and together.shape[2] > alone.shape[2]
    np.testing.assert_array_equal(together[0, :, :n], alone[0, :, :n])
    assert not together[0, :, n:].any()  # padding stays zero


def test_unsupported_preprocessor_settings_are_named(saved_model):
    from quantizer.integer_model import IntegerModel

    model = IntegerModel.load(saved_model)
    with pytest.raises(UnsupportedFrontEndError, match="normalize='all_features'"):
        LogMelFrontEnd(model.preprocessor | {"normalize": "all_features"}, model.filterbank, model.window)
