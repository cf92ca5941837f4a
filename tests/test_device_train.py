import json

import numpy as np
import pytest
import soundfile
import torch
from nemo.collections.asr.models import EncDecCTCModel

from quantizer.checkpoint import read_nemo
from quantizer.manifest import load_audio, load_utterance, read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS, build_nemo_model
from tests.toy_speech import tone_manifest, tone_training_settings
from training.device_train import (
    LOG,
    NETWORK,
    AudioStore,
    DeviceTrainSettings,
    change_speed,
    spec_augment,
    train,
)
from training.network_to_nemo import network_to_nemo
from training.pack_opus import pack
from training.torch_quartznet import ConvASR, network_state
from training.train import model_config


def test_plain_torch_network_matches_nemo_in_eval_and_training_mode(quartznet_nemo):
    nemo = EncDecCTCModel.restore_from(str(quartznet_nemo), map_location="cpu")
    net = ConvASR(nemo.cfg)
    net.load_state_dict(network_state(nemo.state_dict()), strict=True)
    assert set(net.state_dict()) == set(network_state(nemo.state_dict()))
    features = torch.randn(3, 16, 96)
    frames = torch.tensor([96, 70, 33])
    for training in (False, True):
        nemo.train(training)
        net.train(training)
        encoded, nemo_frames = nemo.encoder(audio_signal=features, length=frames)
        expected = nemo.decoder(encoder_output=encoded)
        got, got_frames = net(features, frames)
        assert torch.equal(got_frames, nemo_frames)
        for b, n in enumerate(got_frames.tolist()):
            torch.testing.assert_close(got[b, :n], expected[b, :n], atol=1e-5, rtol=1e-5)
    running = "encoder.encoder.1.mconv.2.running_mean"  # updated by the training-mode pass of both
    torch.testing.assert_close(net.state_dict()[running], nemo.state_dict()[running])


def test_dense_residuals_are_refused(jasperdr_nemo):
    with pytest.raises(ValueError, match="dense"):
        ConvASR(read_nemo(jasperdr_nemo).config)


def test_packed_opus_clips_line_up_with_their_sources(tmp_path):
    manifest = tone_manifest(tmp_path, 6)
    count, seconds = pack(tmp_path / manifest, tmp_path / "packed" / "tones", level=0.5, shard_seconds=3.0)
    originals = read_manifest(manifest, ENGLISH_LABELS)
    assert count == len(originals) == 6 and seconds == pytest.approx(sum(u.seconds for u in originals))
    assert len(list((tmp_path / "packed").glob("tones-*.ogg"))) > 1  # sharded
    store = AudioStore([str(tmp_path / "packed" / "tones.jsonl")], torch.device("cpu"), max_seconds=60)
    packed = read_manifest(tmp_path / "packed" / "tones.jsonl", ENGLISH_LABELS)
    assert all(u.offset is not None for u in packed) and packed[1].offset > 0
    for clip, utterance, original in zip(store.clips, packed, originals, strict=True):
        expected = load_audio(original.audio)
        # what training decodes once per shard, and what qasr eval reads per utterance
        for got in (store.audio(clip).numpy(), load_utterance(utterance)):
            assert clip.text == original.text and abs(len(got) - len(expected)) <= 1
            n = min(len(got), len(expected))
            assert np.corrcoef(got[:n], expected[:n])[0, 1] > 0.95  # lossy, but the same sound at the same place


def test_speed_change_moves_a_tone_and_shortens_the_audio():
    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(16000) / 16000)[None]
    faster = change_speed(tone, 1.25)
    assert faster.shape == (1, 12800)
    spectrum = torch.fft.rfft(faster[0]).abs()
    assert float(torch.argmax(spectrum)) * 16000 / 12800 == pytest.approx(1250, abs=2)
    assert float(faster.pow(2).mean()) == pytest.approx(0.5, rel=0.02)  # loudness kept


def test_spec_augment_masks_at_most_its_bands_and_spans():
    settings = DeviceTrainSettings("", [], "", freq_width=5, time_width=0.1)
    torch.manual_seed(0)
    features = torch.randn(64, 20, 200) + 10  # nothing is 0 before masking
    frames = torch.full((64,), 200)
    masked = spec_augment(features, frames, settings)
    zero = masked == 0
    assert torch.equal(masked[~zero], features[~zero])
    zero_bins = zero.all(dim=2).sum(dim=1)  # bins masked over all frames, per utterance
    zero_frames = zero.all(dim=1).sum(dim=1)
    assert zero_bins.max() <= 2 * 5 and zero_frames.max() <= 2 * 20
    assert zero_bins.float().mean() > 1 and zero_frames.float().mean() > 5  # and it does mask


def _tone_run(tmp_path, **overrides) -> DeviceTrainSettings:
    tone = tone_training_settings(tone_manifest(tmp_path), tmp_path / "unused", steps=1)
    init = build_nemo_model(model_config(tone), seed=0, realistic_batch_norm=False)
    init.save_to(str(tmp_path / "init.nemo"))
    settings = dict(minutes=5, lr=1e-2, warmup_steps=5, batch_seconds=8, freq_width=4, depthwise="fft")
    return DeviceTrainSettings(
        str(tmp_path / "init.nemo"), tone.manifests, str(tmp_path / "run"), **settings | overrides
    )


def test_device_training_lowers_the_loss_resumes_and_converts_to_nemo(tmp_path):
    settings = _tone_run(tmp_path, steps=40)
    assert train(settings)["step"] == 40
    records = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    settings.steps = 45
    assert train(settings)["step"] == 45  # resumed from state.pt, not from step 0

    model = network_to_nemo(tmp_path / "init.nemo", tmp_path / "run" / NETWORK, tmp_path / "trained.nemo")
    nemo = EncDecCTCModel.restore_from(str(model), map_location="cpu").eval()
    net = ConvASR(nemo.cfg).eval()
    net.load_state_dict(torch.load(tmp_path / "run" / NETWORK, weights_only=True))
    features, frames = torch.randn(2, 16, 64), torch.tensor([64, 40])
    encoded, _ = nemo.encoder(audio_signal=features, length=frames)
    torch.testing.assert_close(net(features, frames)[0], nemo.decoder(encoder_output=encoded))


def test_learning_rate_warms_up_and_anneals_to_zero_over_all_runs(tmp_path):
    settings = _tone_run(tmp_path, steps=3, minutes=0.01, anneal_minutes=0.05)
    first = train(settings)
    settings.steps = 0
    settings.minutes = 0.2  # past the annealing's end
    last = train(settings)
    assert first["lr"] < settings.lr * 3 / 5 + 1e-12  # still warming up at step 3
    assert last["lr"] == 0.0 and last["trained_s"] > 0.05 * 60


def test_training_refuses_audio_at_another_rate(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.zeros(8000, np.float32), 8000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a"}))
    with pytest.raises(ValueError, match="8000 Hz"):
        AudioStore([str(tmp_path / "m.jsonl")], torch.device("cpu"), max_seconds=60)
