"""The model in models/ is a trained English model, and its zero-shot integer version keeps its accuracy."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from quantizer import report
from quantizer.cli import main as quantizer_cli
from quantizer.evaluate import evaluate
from quantizer.features import LogMelFrontEnd, pad_audio
from quantizer.integer_model import IntegerModel
from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL, LexiconDecoder, LexiconSettings
from quantizer.pipeline import quantize_checkpoint
from quantizer.synthetic import SyntheticSettings
from tests.toy_speech import espeak_speech
from training.corpus import synthesize_piper

SHIPPED = Path(__file__).parents[1] / "models" / "qasr-en-quartznet5x5.nemo"
SENTENCES = [  # espeak-ng's default voice; none of these is in the training text (the KJV)
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "we will meet at the station after dinner",
    "please open the window because it is warm in here",
]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is a system package (make system-packages)")
def test_the_shipped_model_transcribes_english_and_its_integer_graph_agrees(tmp_path):
    lines = []
    for number, sentence in enumerate(SENTENCES):
        audio = espeak_speech(sentence)
        soundfile.write(tmp_path / f"{number}.wav", audio, 16000)
        lines.append(json.dumps({"audio_filepath": f"{number}.wav", "duration": len(audio) / 16000, "text": sentence}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines))
    assert quantizer_cli(["quantize", str(SHIPPED), "--out", str(tmp_path / "model")]) == 0
    fp32, integer = (evaluate(tmp_path / "model", tmp_path / "manifest.jsonl", b) for b in ("fp32", "integer"))
    assert fp32.cer < 0.5, fp32.hypotheses  # an untrained or broken model scores about 1.0
    assert abs(integer.cer - fp32.cer) < 0.05, (fp32.hypotheses, integer.hypotheses)
    labels = IntegerModel.load(tmp_path / "model").labels
    decoder = LexiconDecoder(labels, LexiconSettings(language_model=str(SHIPPED_LANGUAGE_MODEL)))
    lexicon = evaluate(tmp_path / "model", tmp_path / "manifest.jsonl", "integer", lexicon=decoder)
    assert lexicon.wer < integer.wer, (integer.hypotheses, lexicon.hypotheses)  # misspellings become words


@pytest.fixture(scope="module")
def piper_speech(tmp_path_factory) -> list[np.ndarray]:
    """SENTENCES in piper's joe voice at 16 kHz, without its sampling noise (so the same every run)."""
    folder = tmp_path_factory.mktemp("piper")
    calm = {"length_scale": 1.0, "noise_scale": 0.0, "noise_w_scale": 0.0}
    clips = [soundfile.read(path, dtype="float32") for path in synthesize_piper(SENTENCES, calm, folder)]
    return [soxr.resample(audio, rate, 16000).astype(np.float32) for audio, rate in clips]


@pytest.mark.slow
def test_a_speech_like_start_calibrates_the_shipped_model_closer_to_speech(piper_speech):
    """Averaged over seeds 0 and 1, the integer model's worst layer is nearer FP32's on piper's speech
    when the synthesis starts speech-like (run 19, session 15: 25.4 against 22.4 dB; run 15: 24.2
    against 23.0). The logits gain there is smaller (+0.7 dB at seed 0, +0.3 dB at seed 1; run 15:
    +0.2 and -0.6); on recorded speech it is larger (README)."""
    worst_layer_db: dict[bool, list[float]] = {True: [], False: []}
    for seed in (0, 1):
        for speech_like in (True, False):
            model, _, graph = quantize_checkpoint(SHIPPED, SyntheticSettings(speech_like_start=speech_like, seed=seed))
            features, frames = LogMelFrontEnd.of(model)(*pad_audio(piper_speech))
            layers = [layer["sqnr_db"] for layer in report.evaluate(graph, model, features, frames)["layers"]]
            worst_layer_db[speech_like].append(min(layers))
    assert np.mean(worst_layer_db[True]) > np.mean(worst_layer_db[False]), worst_layer_db
