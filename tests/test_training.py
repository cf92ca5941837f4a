import json

import numpy as np

from quantizer.manifest import normalize_text, read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS
from tests.toy_speech import tone_manifest, tone_training_settings
from training.train import LOG, train


def test_text_is_normalised_to_the_vocabulary():
    assert normalize_text("Well-known, it's 42 DAYS!", ENGLISH_LABELS) == "well known it's days"


def test_manifest_paths_are_relative_to_the_manifest_and_long_ones_skipped(tmp_path):
    manifest = tone_manifest(tmp_path, 2)
    utterances = read_manifest(manifest, ENGLISH_LABELS, max_seconds=10)
    assert [u.audio.exists() for u in utterances] == [True, True]
    assert read_manifest(manifest, ENGLISH_LABELS, max_seconds=0.5) == []


def test_training_lowers_the_loss_and_resumes(tmp_path):
    settings = tone_training_settings(tone_manifest(tmp_path), tmp_path / "run", steps=40)
    last = train(settings)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert last["step"] == 40 and len(losses) == 40
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert (tmp_path / "run" / "model.nemo").exists()
    settings.steps = 45
    assert train(settings)["step"] == 45  # resumed from the checkpoint, not from step 0
