import json

import numpy as np
import pytest
import torch
from nemo.collections.asr.models import EncDecCTCModel

from quantizer.manifest import load_audio, normalize_text, read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS, build_nemo_model
from tests.toy_speech import tone_manifest, tone_training_settings
from training.fft_conv import FFTDepthwiseConv1d, replaceable, use_fft_depthwise
from training.teacher import FRAME_SAMPLES, STATS, TEACHER_DIM, frames_key, write_stats
from training.train import CHECKPOINT, LOG, TeacherTargets, TrainSettings, learning_rate, model_config, train


def test_text_is_normalised_to_the_vocabulary():
    assert normalize_text("Well-known, it's 42 DAYS!", ENGLISH_LABELS) == "well known it's days"


def test_manifest_paths_are_relative_to_the_manifest_and_long_ones_skipped(tmp_path):
    manifest = tone_manifest(tmp_path, 2)
    utterances = read_manifest(manifest, ENGLISH_LABELS, max_seconds=10)
    assert [u.audio.exists() for u in utterances] == [True, True]
    assert read_manifest(manifest, ENGLISH_LABELS, max_seconds=0.5) == []
    assert [u.offset for u in utterances] == [None, None]  # no offset: each utterance is its whole file


@pytest.mark.parametrize("degrade_probability", [0.0, 0.5])
def test_training_lowers_the_loss_and_resumes(tmp_path, degrade_probability):
    settings = tone_training_settings(tone_manifest(tmp_path), tmp_path / "run", steps=40)
    settings.degrade_probability = degrade_probability
    last = train(settings)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert last["step"] == 40 and len(losses) == 40
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert (tmp_path / "run" / "model.nemo").exists()
    settings.steps = 45
    assert train(settings)["step"] == 45  # resumed from the checkpoint, not from step 0


def test_distillation_lowers_its_loss_keeps_the_head_out_of_the_model_and_resumes(tmp_path):
    manifest = tone_manifest(tmp_path)
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    direction = np.random.default_rng(1).normal(size=TEACHER_DIM)
    for utterance in read_manifest(manifest, ENGLISH_LABELS):  # learnable targets: loudness per 20 ms
        audio = load_audio(utterance.audio)
        padded = np.zeros(-(-len(audio) // FRAME_SAMPLES) * FRAME_SAMPLES, np.float32)
        padded[: len(audio)] = audio
        loudness = np.sqrt((padded.reshape(-1, FRAME_SAMPLES) ** 2).mean(axis=1))
        np.save(teacher_dir / f"{frames_key(utterance.audio)}.npy", np.outer(loudness, direction).astype(np.float16))
    write_stats(teacher_dir)
    settings = tone_training_settings(manifest, tmp_path / "run", steps=40)
    settings.teacher = str(teacher_dir)
    settings.speed_range = 0.1  # audio and teacher frames stretched together
    train(settings)
    records = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    distill = [r["distill"] for r in records]
    assert np.mean(distill[-5:]) < 0.85 * np.mean(distill[:5])  # random targets: 0.99
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)
    assert state["teacher_head"]["weight"].shape == (TEACHER_DIM, 32, 1)  # epilogue: 2 x 16 channels
    restored = EncDecCTCModel.restore_from(str(tmp_path / "run" / "model.nemo"), map_location="cpu")
    assert set(restored.state_dict()) == set(state["model"])  # the head is training-only
    settings.steps = 43
    assert train(settings)["step"] == 43


def test_teacher_frames_missing_for_an_utterance_are_masked(tmp_path):
    manifest = tone_manifest(tmp_path, 2)
    first, second = read_manifest(manifest, ENGLISH_LABELS)
    np.save(tmp_path / f"{frames_key(first.audio)}.npy", np.ones((10, TEACHER_DIM), np.float16))
    np.savez(tmp_path / STATS, mean=np.zeros(TEACHER_DIM), std=np.full(TEACHER_DIM, 2.0))
    teacher = TeacherTargets(tmp_path)
    targets, mask = teacher.batch([first, second], frames=12, speeds=[1.0, 1.0])
    assert mask.sum(dim=1).tolist() == [10, 0]
    assert torch.all(targets[0, :, :10] == 0.5) and torch.all(targets[:, :, 10:] == 0)
    _, faster = teacher.batch([first, second], frames=12, speeds=[1.1, 0.9])
    assert faster.sum(dim=1).tolist() == [9, 0]  # 10 frames played 1.1x as fast


def test_annealing_takes_the_learning_rate_linearly_to_zero(tmp_path):
    settings = tone_training_settings("unused", tmp_path, steps=1)
    plain = [learning_rate(settings, step) for step in (100, 150, 200)]
    settings.anneal_from, settings.anneal_to = 100, 200
    annealed = [learning_rate(settings, step) for step in (99, 100, 150, 200, 250)]
    assert annealed[0] == learning_rate(TrainSettings([], "", warmup_steps=5, lr=1e-2), 99)
    assert annealed[1:] == [plain[0], plain[1] * 0.5, 0.0, 0.0]


def test_fft_swap_keeps_a_nemo_models_outputs_and_state_dict_keys(tmp_path):
    settings = tone_training_settings("unused", tmp_path, steps=1)
    model = build_nemo_model(model_config(settings), seed=0, realistic_batch_norm=False).eval()
    signal, length = torch.randn(2, 16000), torch.tensor([16000, 11000])
    keys, parameters = list(model.state_dict()), list(model.parameters())
    expected = model.forward(input_signal=signal, input_signal_length=length)[0]
    swapped = use_fft_depthwise(model)
    assert swapped == 5 * settings.repeat + 1  # every block's depthwise conv and the dilated epilogue, not the prologue
    assert not any(replaceable(m) for m in model.modules())
    assert sum(isinstance(m, FFTDepthwiseConv1d) for m in model.modules()) == swapped
    assert list(model.state_dict()) == keys
    assert all(new is old for new, old in zip(model.parameters(), parameters, strict=True))  # optimizers keep theirs
    got = model.forward(input_signal=signal, input_signal_length=length)[0]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
