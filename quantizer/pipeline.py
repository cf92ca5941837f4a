"""`.nemo` checkpoint -> integer model and report: load, fold, synthesise, calibrate, quantize, evaluate."""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from quantizer.calibrate import calibrate_ranges
from quantizer.checkpoint import read_nemo
from quantizer.equalize import channel_peaks, equalize_channels
from quantizer.graph import FloatGraph, FloatModel, build_float_graph
from quantizer.integer_model import IntegerModel
from quantizer.quantize import QuantSettings, quantize_graph
from quantizer.report import evaluate, model_sizes
from quantizer.rounding import input_grams
from quantizer.synthetic import SyntheticSettings, generate

EVAL_SEED_OFFSET = 1000  # held-out synthetic inputs use seed + this
WEIGHT_ROUNDINGS = ("nearest", "gptq")  # quantizer.rounding


@dataclasses.dataclass(frozen=True)
class CalibrationSettings:
    method: str = "percentile"
    percentile: float = 99.99
    eval_samples: int = 2  # held-out synthetic inputs for the report
    equalize: float = 0.25  # channel equalization strength, 0 (off) to 1 (quantizer.equalize)
    rounding: str = "gptq"  # weight codes: nearest, or error-compensating on the synthetic inputs

    def __post_init__(self):
        if not 0 <= self.equalize <= 1:
            raise ValueError(f"equalization strength must be between 0 and 1, got {self.equalize}")
        if self.rounding not in WEIGHT_ROUNDINGS:
            raise ValueError(f"weight rounding must be one of {WEIGHT_ROUNDINGS}, got '{self.rounding}'")


class StageTimer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)


def quantize_checkpoint(
    path: str | Path,
    synthetic: SyntheticSettings = SyntheticSettings(),
    quant: QuantSettings = QuantSettings(),
    calibration: CalibrationSettings = CalibrationSettings(),
    progress: bool = False,
) -> tuple[IntegerModel, dict, FloatGraph]:
    """Quantize a checkpoint with no real data; returns the model, its report and the float graph it
    quantizes (channel-equalized: the checkpoint's function, node outputs rescaled per channel)."""
    timer = StageTimer()
    with timer.stage("load"):
        checkpoint = read_nemo(path)
    with timer.stage("fold"):
        graph = build_float_graph(checkpoint)
        float_model = FloatModel(graph)
    with timer.stage("synthesize"):
        data = generate(float_model, synthetic, progress=progress)
    with timer.stage("calibrate"):
        # strength 0 needs no peaks: skip their forward pass over the synthetic inputs
        peaks = (
            channel_peaks(float_model, data.features, data.lengths, synthetic.batch_size)
            if calibration.equalize
            else {}
        )
        equalized = equalize_channels(graph, peaks, calibration.equalize)
        equalized_model = FloatModel(equalized)
        ranges = calibrate_ranges(
            equalized_model,
            data.features,
            data.lengths,
            calibration.method,
            calibration.percentile,
            synthetic.batch_size,
            quant.act_bits,
        )
    with timer.stage("quantize"):
        grams = (
            input_grams(equalized_model, data.features, data.lengths, synthetic.batch_size)
            if calibration.rounding == "gptq"
            else None
        )
        model = quantize_graph(equalized, ranges, quant, grams)
        model.settings.update(
            checkpoint_sha256=checkpoint.sha256,
            synthetic=synthetic.as_dict(),
            calibration=dataclasses.asdict(calibration),
        )
    with timer.stage("evaluate"):
        held_out = dataclasses.replace(
            synthetic, samples=calibration.eval_samples, seed=synthetic.seed + EVAL_SEED_OFFSET
        )
        eval_data = generate(float_model, held_out, progress=progress)
        evaluation = evaluate(equalized, model, eval_data.features, eval_data.lengths)
    report = {
        "checkpoint": str(path),
        "checkpoint_sha256": checkpoint.sha256,
        "parameters": graph.parameter_count(),
        "nodes": len(graph.nodes),
        "settings": model.settings,
        "synthetic": {
            "initial_loss": data.initial_loss,
            "final_loss": data.final_loss,
            "loss_reduction": data.initial_loss / max(data.final_loss, 1e-12),
        },
        "input_scale": model.input_scale,
        "size": model_sizes(graph, model),
        "argmax_agreement": evaluation["argmax_agreement"],
        "eval_frames": evaluation["frames"],
        "layers": evaluation["layers"],
        "seconds": timer.seconds,
        "torch_threads": torch.get_num_threads(),
    }
    return model, report, equalized
