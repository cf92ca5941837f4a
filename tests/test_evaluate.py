import json
import os
from pathlib import Path

import jiwer
import numpy as np
import pytest

from quantizer.cli import main
from quantizer.ctc import greedy_text
from quantizer.evaluate import Evaluation, evaluate
from quantizer.lexicon import SHIPPED_LANGUAGE_MODEL, LexiconDecoder, LexiconSettings
from quantizer.lexicon_workers import SearchWorkers
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


def test_wer_by_group_pools_edits_and_words_within_each_group():
    result = Evaluation(
        backend="fp32",
        provider="CPUExecutionProvider",
        wer=3 / 11,
        cer=0.0,
        references=["a b c d", "e f g h i", "j k"],
        hypotheses=["a b c", "e f g h i", "x y"],
        audio=[Path("1.wav"), Path("2.wav"), Path("3.wav")],
        seconds=3.0,
        edits=np.array([1, 0, 2]),
        words=np.array([4, 5, 2]),
        groups=["north", "south", "north"],
        manifests=["a.jsonl", "a.jsonl", "b.jsonl"],
    )
    assert result.wer_by_group() == {"north": (2, 6, 0.5), "south": (1, 5, 0.0)}
    assert result.wer_by_group(result.manifests) == {"a.jsonl": (2, 9, 1 / 9), "b.jsonl": (1, 2, 1.0)}


def test_eval_cli_breaks_wer_down_by_a_manifest_field(tone_model, tmp_path, capsys):
    model_dir, manifest = tone_model
    entries = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    for number, entry in enumerate(entries):
        entry["audio_filepath"] = str(Path(manifest).parent / entry["audio_filepath"])
        entry["speaker"] = "early" if number < 3 else "late"
    grouped = tmp_path / "grouped.jsonl"
    grouped.write_text("".join(json.dumps(entry) + "\n" for entry in entries))

    arguments = ["eval", "--model", str(model_dir), "--manifest", str(grouped), "--per-utterance"]
    assert main([*arguments, "--group-by", "speaker"]) == 0
    out = capsys.readouterr().out.splitlines()

    assert "| speaker | utterances | words | fp32 WER % | integer WER % |" in out
    rows = {line.split("|")[1].strip(): line.split("|")[2:6] for line in out if line.startswith(("| early", "| late"))}
    for group, chosen in (("early", range(3)), ("late", range(3, 8))):
        references = [entries[i]["text"] for i in chosen]
        assert int(rows[group][0]) == len(chosen) and int(rows[group][1]) == len(references)  # one word each
        names = {Path(entries[i]["audio_filepath"]).name for i in chosen}
        for column, backend in ((2, "fp32"), (3, "integer")):
            lines = [line.split("\t") for line in out if f"\t{backend}\t" in line]
            hypotheses = [line[2] for line in lines if line[0] in names]
            assert float(rows[group][column]) == pytest.approx(100 * jiwer.wer(references, hypotheses), abs=0.01)


def test_eval_pools_manifests_and_reports_each_one(tone_model, tmp_path, capsys):
    model_dir, manifest = tone_model
    lines = Path(manifest).read_text().splitlines()
    parts = []
    for name, chosen in (("first", lines[:3]), ("second", lines[3:])):
        folder = tmp_path / name
        folder.mkdir()
        entries = [json.loads(line) for line in chosen]
        for entry in entries:  # relative to this manifest's own folder
            entry["audio_filepath"] = os.path.relpath(Path(manifest).parent / entry["audio_filepath"], folder)
        (folder / "manifest.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in entries))
        parts.append(folder / "manifest.jsonl")

    pooled, whole = evaluate(model_dir, parts, "integer"), evaluate(model_dir, manifest, "integer")
    assert pooled.hypotheses == whole.hypotheses and pooled.references == whole.references
    assert pooled.manifests == [str(parts[0])] * 3 + [str(parts[1])] * 5

    assert main(["eval", "--model", str(model_dir), "--manifest", str(parts[0]), "--manifest", str(parts[1])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("8 utterances") and "| manifest | utterances | words | fp32 WER % | integer WER % |" in out
    for part in parts:
        alone = evaluate(model_dir, part, "integer")
        row = next(line for line in out if line.startswith(f"| {part} |")).split("|")
        assert int(row[2]) == len(alone.references)
        assert float(row[5]) == pytest.approx(100 * alone.wer, abs=0.01)


def test_eval_cli_names_the_pooled_manifest_that_has_no_usable_text(tone_model, tmp_path, capsys):
    model_dir, manifest = tone_model
    entry = json.loads(Path(manifest).read_text().splitlines()[0])
    entry["audio_filepath"] = str(Path(manifest).parent / entry["audio_filepath"])
    entry["text"] = "0123 !?"  # nothing left once reduced to the model's letters
    empty = tmp_path / "digits.jsonl"
    empty.write_text(json.dumps(entry) + "\n")
    assert main(["eval", "--model", str(model_dir), "--manifest", manifest, "--manifest", str(empty)]) == 2
    assert f"{empty}: no utterance with text in the model's vocabulary" in capsys.readouterr().err


def test_eval_cli_names_a_missing_group_field(tone_model, capsys):
    model_dir, manifest = tone_model
    assert main(["eval", "--model", str(model_dir), "--manifest", manifest, "--group-by", "speaker"]) == 2
    assert "manifest.jsonl:1: no field 'speaker' to group by" in capsys.readouterr().err


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


def test_searches_in_worker_processes_give_the_in_process_transcripts(tone_model):
    """Evaluation hands searches to workers while the next batch runs: same transcripts, same order."""
    model_dir, manifest = tone_model
    settings = LexiconSettings(language_model=str(SHIPPED_LANGUAGE_MODEL), word_score=20.0, beam=50)
    in_process = evaluate(model_dir, manifest, "integer", batch=3, lexicon=LexiconDecoder(ENGLISH_LABELS, settings))
    with SearchWorkers(ENGLISH_LABELS, settings, 2) as workers:
        in_workers = evaluate(model_dir, manifest, "integer", batch=3, lexicon=workers)
    assert sum(bool(h) for h in in_process.hypotheses) >= 4  # the word score makes the tones spell words
    assert in_workers.hypotheses == in_process.hypotheses


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
    vocabulary = tmp_path / "words.txt"
    vocabulary.write_text("naïve\n")
    assert main([*arguments, "--decoder", "lexicon", "--vocabulary", str(vocabulary)]) == 2
    error = capsys.readouterr().err
    assert f"{vocabulary}, line 1: 'naïve' has characters the model cannot spell" in error and "Traceback" not in error


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
