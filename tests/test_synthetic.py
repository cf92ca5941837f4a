import numpy as np
import pytest
import torch

from quantizer.checkpoint import read_nemo
from quantizer.graph import FloatModel, build_float_graph
from quantizer.synthetic import BatchNormStatisticsLoss, SyntheticSettings, generate, speech_like_noise

FAST = SyntheticSettings(samples=4, frames=80, min_frames=40, iters=150, batch_size=4)


@pytest.fixture(scope="module")
def model(quartznet_nemo):
    return FloatModel(build_float_graph(read_nemo(quartznet_nemo)))


def test_optimisation_lowers_the_batch_norm_loss_by_a_large_factor(model):
    data = generate(model, FAST)
    assert data.final_loss < data.initial_loss / 10


def test_same_seed_same_data_other_seed_other_data(model):
    settings = SyntheticSettings(samples=2, frames=40, min_frames=20, iters=5, batch_size=2, seed=7)
    first, second = generate(model, settings), generate(model, settings)
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.lengths, second.lengths)
    other = generate(model, SyntheticSettings(samples=2, frames=40, min_frames=20, iters=5, batch_size=2, seed=8))
    assert not np.array_equal(first.features, other.features)


def test_input_prior_gives_per_feature_normalised_inputs_and_zero_padding(model):
    data = generate(model, SyntheticSettings(samples=3, frames=60, min_frames=20, iters=3, batch_size=3))
    assert data.lengths.max() == 60 and data.lengths.min() >= 20
    for features, length in zip(data.features, data.lengths, strict=True):
        valid = features[:, :length]
        np.testing.assert_allclose(valid.mean(axis=1), 0, atol=1e-4)
        np.testing.assert_allclose(valid.std(axis=1, ddof=1), 1, atol=1e-3)
        assert not features[:, length:].any()


def test_fixed_length_without_prior_is_the_papers_setting(model):
    settings = SyntheticSettings(
        samples=2, frames=30, min_frames=30, iters=0, input_prior=False, speech_like_start=False
    )
    data = generate(model, settings)
    assert (data.lengths == 30).all()
    assert np.abs(data.features).max() <= 0.3  # the paper's uniform [-0.3, 0.3] start, no steps taken


def test_per_sample_loss_is_larger_than_pooled_on_mixed_inputs(model):
    features = torch.randn(2, 16, 40) * torch.tensor([0.2, 3.0])[:, None, None]
    lengths = torch.tensor([40, 40])
    pooled = BatchNormStatisticsLoss(model, per_sample=False)(features, lengths)
    both = BatchNormStatisticsLoss(model, per_sample=True)(features, lengths)
    assert both > pooled > 0


@pytest.mark.parametrize("bad", [dict(min_frames=0), dict(min_frames=500, frames=400), dict(samples=0)])
def test_settings_are_validated(bad):
    with pytest.raises(ValueError):
        SyntheticSettings(**bad)


def lag_one_correlation(x: np.ndarray, axis: int) -> float:
    """Correlation of neighbours along an axis of a zero-mean array."""
    a, b = np.moveaxis(x, axis, -1)[..., :-1], np.moveaxis(x, axis, -1)[..., 1:]
    return float((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))


@pytest.mark.parametrize("speech_like", [True, False])
def test_speech_like_start_is_smooth_in_time_and_bins_and_shares_loudness(speech_like):
    generator = torch.Generator().manual_seed(0)
    if speech_like:
        noise = speech_like_noise(8, 16, 400, generator).numpy()
    else:
        noise = (torch.rand(8, 16, 400, generator=generator) * 2 - 1).numpy() * 3**0.5
    assert abs(noise.std() - 1) < 0.05
    smooth = lag_one_correlation(noise, 2) > 0.7 and lag_one_correlation(noise, 1) > 0.5
    # a loudness envelope shared by all 16 bins keeps the mean over bins far above white noise's 1/16
    shared = noise.mean(axis=1).var() > 0.3
    assert smooth == shared == speech_like
