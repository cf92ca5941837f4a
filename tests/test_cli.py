import json

import onnx
import pytest

from quantizer.cli import main
from quantizer.integer_model import IntegerModel

CHEAP = ["--samples", "2", "--frames", "40", "--min-frames", "30", "--iters", "3", "--eval-samples", "1"]


def test_quantize_writes_model_and_report(quartznet_nemo, tmp_path, capsys):
    out = tmp_path / "int8"
    args = ["quantize", str(quartznet_nemo), "--out", str(out), "--calib", "mse", "--int8-weights", "u8", *CHEAP]
    args += ["--equalize", "0.5"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["int8_weights"] == "u8"
    assert onnx.load(str(out / "int8.onnx")).metadata_props[0].value == "u8"
    assert report["settings"]["calibration"]["method"] == "mse"
    assert report["settings"]["calibration"]["equalize"] == 0.5
    assert report["settings"]["synthetic"]["samples"] == 2
    assert len(report["layers"]) == len(IntegerModel.load(out).nodes)
    assert "argmax agreement" in capsys.readouterr().out


def test_quantize_reports_a_missing_checkpoint(tmp_path, capsys):
    assert main(["quantize", str(tmp_path / "absent.nemo"), "--out", str(tmp_path / "out")]) == 2
    assert "absent.nemo: no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_quantize_rejects_bad_bits(quartznet_nemo, tmp_path, capsys):
    assert main(["quantize", str(quartznet_nemo), "--out", str(tmp_path), "--weight-bits", "12", *CHEAP]) == 2
    assert "weight_bits must be between 2 and 8" in capsys.readouterr().err


def test_quantize_rejects_an_equalization_strength_outside_0_to_1(quartznet_nemo, tmp_path, capsys):
    assert main(["quantize", str(quartznet_nemo), "--out", str(tmp_path / "out"), "--equalize", "1.5", *CHEAP]) == 2
    assert "equalization strength must be between 0 and 1, got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_quantize_rejects_an_unknown_int8_weight_type(quartznet_nemo, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["quantize", str(quartznet_nemo), "--out", str(tmp_path / "out"), "--int8-weights", "u7", *CHEAP])
    assert exit_info.value.code == 2
    assert "argument --int8-weights: invalid choice: 'u7'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
