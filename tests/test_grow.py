import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from nemo.collections.asr.models import EncDecCTCModel

from quantizer.manifest import load_audio, read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS
from tests.toy_speech import tone_manifest, tone_training_settings
from training.grow import checkpoint_model, grow_checkpoint, new_positions, rectified_gaussian_moments, save_nemo
from training.train import CHECKPOINT, LOG, train


@pytest.mark.parametrize(
    ("old", "new", "positions"),
    [(3, 5, [0, None, 1, None, 2]), (3, 4, [0, None, 1, 2]), (2, 4, [0, None, None, 1]), (3, 3, [0, 1, 2])],
)
def test_inserts_go_between_old_repeats_never_after_the_last(old, new, positions):
    assert new_positions(old, new) == positions


@pytest.mark.parametrize(("old", "new"), [(1, 2), (3, 2)])
def test_blocks_that_cannot_be_deepened_are_refused(old, new):
    with pytest.raises(ValueError, match="can deepen"):
        new_positions(old, new)


def test_rectified_gaussian_moments_match_sampling():
    mean, std = torch.tensor([-1.0, 0.0, 0.7, 2.0]), torch.tensor([0.5, 1.0, 1.3, 0.4])
    samples = torch.relu(mean + std * torch.randn(400_000, 4, generator=torch.Generator().manual_seed(0)))
    first, variance = rectified_gaussian_moments(mean, std)
    np.testing.assert_allclose(first, samples.mean(0), atol=4e-3)
    np.testing.assert_allclose(variance, samples.var(0), atol=6e-3)


def _log_probs(model, audio: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_signal=audio[None], input_signal_length=torch.tensor([len(audio)]))[0]


def test_grown_checkpoint_computes_the_same_and_trains_on(tmp_path):
    manifest = tone_manifest(tmp_path)
    settings = replace(tone_training_settings(manifest, tmp_path / "run", steps=20), repeat=2)
    train(settings)
    old = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)

    grown = grow_checkpoint(old, repeat=4)

    audio = torch.from_numpy(load_audio(read_manifest(manifest, ENGLISH_LABELS)[0].audio))
    old_out, grown_out = _log_probs(checkpoint_model(old), audio), _log_probs(checkpoint_model(grown), audio)
    assert old_out.shape == grown_out.shape
    torch.testing.assert_close(grown_out, old_out, atol=1e-4, rtol=0)
    assert sum(v.numel() for k, v in grown["model"].items() if k.endswith("conv.weight")) > sum(
        v.numel() for k, v in old["model"].items() if k.endswith("conv.weight")
    )
    save_nemo(grown, tmp_path / "grown.nemo")
    restored = EncDecCTCModel.restore_from(str(tmp_path / "grown.nemo"), map_location="cpu").eval()
    torch.testing.assert_close(_log_probs(restored, audio), old_out, atol=1e-4, rtol=0)
    # Copied parameters keep their AdamW moments; the inserted repeats' parameters start fresh.
    assert len(grown["optimizer"]["state"]) == len(old["optimizer"]["state"])
    assert grown["step"] == old["step"] == 20

    torch.save(grown, tmp_path / "run" / CHECKPOINT)
    last = train(replace(settings, repeat=4, steps=30))
    assert last["step"] == 30  # resumed from the grown checkpoint, not from step 0
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < 1.5 * np.mean(losses[15:20])
