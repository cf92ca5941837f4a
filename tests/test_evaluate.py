import numpy as np
import pytest

from quantizer.cli import main
from quantizer.ctc import greedy_text
from quantizer.evaluate import evaluate
from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL, LexiconDecoder, LexiconSettings
from quantizer.manifest import read_manifest
from quantizer.nemo_configs import ENGLISH_LABELS
from quantizer.onnx_export import write_backends
from quantizer.pipeline import quantize_checkpoint
from quantizer.synthetic import SyntheticSettings
from tests.toy_speech import tone_manifest, tone_training_settings
from training.train import train

BLANK = len(ENGLISH_LABELS)


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    a, b, space = ENGLISH_LABELS.index("a"), ENGLISH_LABELS.index("b"), ENGLISH_LABELS.index(" ")
    tokens = np.array([a, a, BLANK, a, b, b, space, BLANK, b, a, a])
    assert greedy_text(tokens, 9, ENGLISH_LABELS) == "aab b"


@pytest.fixture(scope="module")
def tone_model(tmp_path_factory):
    """A tiny model trained on tone 'speech' and quantized: tone_manifest audio is what it knows."""
    folder = tmp_path_factory.mktemp("tones")
    manifest = tone_manifest(folder)
    settings = tone_training_settings(manifest, folder / "run", steps=60)
    train(settings)
    cheap = SyntheticSettings(samples=2, frames=80, min_frames=80, iters=5, batch_size=2)
    model, _, graph = quantize_checkpoint(folder / "run" / "model.nemo", cheap)
    model.save(folder / "int8")
    write_backends(folder / "int8", model, graph)
    return folder / "int8", manifest


def test_evaluation_scores_each_backend_against_the_manifest(tone_model):
    model_dir, manifest = tone_model
    fp32, integer = (evaluate(model_dir, manifest, backend) for backend in ("fp32", "integer"))
    assert fp32.references == [u.text for u in read_manifest(manifest, ENGLISH_LABELS)]
    assert len(integer.hypotheses) == len(integer.references) == 8
    assert 0.0 <= integer.cer <= 1.0 and 0.0 <= fp32.wer
    assert integer.edits.sum() / integer.words.sum() == pytest.approx(integer.wer)
    assert integer.seconds == pytest.approx(8 * 3 * (4000 + 1600) / 16000)  # 3 tones + pauses each


def test_eval_cli_compares_backends_side_by_side(tone_model, capsys):
    model_dir, manifest = tone_model
    assert main(["eval", "--model", str(model_dir), "--manifest", manifest, "--per-utterance"]) == 0
    out = capsys.readouterr().out
    assert "| fp32 | CPU |" in out and "| integer | CPU |" in out and "\tref\t" in out
    integer_row = next(line for line in out.splitlines() if line.startswith("| integer |"))
    low, high = (float(x) for x in integer_row.split("|")[6].split(".."))
    change = float(integer_row.split("|")[5])
    assert low <= change <= high


@pytest.mark.parametrize("language_model", ["", str(SHIPPED_LANGUAGE_MODEL)])
def test_eval_cli_lexicon_decoding_spells_only_lexicon_words(tone_model, capsys, language_model):
    """With no ARPA file the lexicon is wordfreq's top words; with one, its 1-grams."""
    model_dir, manifest = tone_model
    arguments = ["eval", "--model", str(model_dir), "--manifest", manifest, "--backend", "integer", "--per-utterance"]
    arguments += ["--decoder", "lexicon", "--words", "20000", "--language-model", language_model]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "lexicon decoding" in out
    hypotheses = [line.split("\t")[2] for line in out.splitlines() if "\tinteger\t" in line]
    settings = LexiconSettings(words=20000, language_model=language_model)
    lexicon = set(LexiconDecoder(ENGLISH_LABELS, settings).words)
    assert (len(lexicon) > 20_001) == bool(language_model)  # the ARPA's 97,724 words, or wordfreq's top 20,000
    assert len(hypotheses) == 8 and all(set(h.split()) <= lexicon for h in hypotheses)


def test_eval_cli_names_a_language_model_it_cannot_use(tone_model, tmp_path, capsys):
    """A missing or non-ARPA --language-model is exit 2 with the path in the message, not a traceback."""
    model_dir, manifest = tone_model
    arguments = ["eval", "--model", str(model_dir), "--manifest", manifest, "--backend", "integer"]
    not_arpa = tmp_path / "words.arpa"
    not_arpa.write_text("hello\n")
    for path, phrase in ((tmp_path / "gone.arpa", "No such file"), (not_arpa, "no 1-grams")):
        assert main([*arguments, "--decoder", "lexicon", "--language-model", str(path)]) == 2
        error = capsys.readouterr().err
        assert str(path) in error and phrase in error and "Traceback" not in error


def test_eval_cli_names_a_missing_gpu_provider(tone_model, capsys):
    """Where onnxruntime has no CUDA provider (CI), asking for it is a clear error, not a traceback."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    model_dir, manifest = tone_model
    arguments = ["eval", "--model", str(model_dir), "--manifest", manifest, "--backend", "qdq", "--device", "cuda"]
    assert main(arguments) == 2
    assert "CUDAExecutionProvider was requested" in capsys.readouterr().err


def test_eval_cli_reports_a_missing_model_folder(tmp_path, capsys):
    manifest = tone_manifest(tmp_path, 1)
    assert main(["eval", "--model", str(tmp_path / "none"), "--manifest", manifest]) == 2
    assert "no model.json" in capsys.readouterr().err


def test_bad_manifest_line_is_named(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"audio_filepath": "a.wav"}\n')
    with pytest.raises(ValueError, match="m.jsonl:1: not a NeMo manifest line"):
        read_manifest(tmp_path / "m.jsonl", ENGLISH_LABELS)
