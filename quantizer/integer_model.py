"""The integer model: int8 weights, int32 biases, dyadic requantization, and its file format.

Semantics of one node (the integer reference implements exactly this):

    acc_i[b, c, t] = conv(x_i masked to its valid frames, W_i)[b, c, t] + B_i[c]          (int32)
    y[b, c, t]     = (sum_i acc_i * M_i[c] + 2^(shift[c] - 1)) >> shift[c]                  (int64, >> floors)
    y              = clamp(relu(y) if relu else y, out_min, out_max)

Each term i has its own dyadic multiplier M_i[c] / 2^shift[c] (the residual add of Q-ASR:
every branch rescaled to the output scale, summed as integers, rounded once).

Files: `model.json` (format name and version, graph, scales, labels, preprocessor, settings)
and `weights.npz` (int8 weights, int32 biases, int64 multipliers and shifts, and the checkpoint's
mel filterbank and window for `quantizer.features`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quantizer.graph import ConvShape

FORMAT_NAME = "qasr.integer-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"


class ArtifactError(ValueError):
    """An integer-model folder is missing, corrupt or of another format version."""


@dataclass
class IntegerTerm(ConvShape):
    source: str
    weight: np.ndarray  # int8 [C_out, C_in / groups, K], symmetric, per output channel
    bias: np.ndarray  # int32 [C_out], scale = input scale * weight_scale
    multiplier: np.ndarray  # int64 [C_out], M_i of the node formula
    weight_scale: np.ndarray  # float64 [C_out] (metadata: the int8 backend and reports use it)
    stride: int = 1
    dilation: int = 1
    padding: int = 0
    groups: int = 1
    # Calibrated magnitude of this term's own output, for backends that requantize each branch
    # before adding (int8's QLinearAdd); 0 for single-term nodes. Not used by the integer semantics.
    output_range: float = 0.0


@dataclass
class IntegerNode:
    name: str
    terms: list[IntegerTerm]
    shift: np.ndarray  # int64 [C_out]
    relu: bool
    out_min: int
    out_max: int
    scale: float  # real value of one output step
    bits: int

    @property
    def signed(self) -> bool:
        return self.out_min < 0


@dataclass
class IntegerModel:
    feat_in: int
    input_scale: float  # features -> int: q = clamp(round_half_up(x / input_scale))
    input_bits: int
    nodes: list[IntegerNode]
    labels: list[str]
    preprocessor: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # quantizer settings and checkpoint hash
    filterbank: np.ndarray | None = None  # NeMo's mel filterbank [n_mels, n_fft / 2 + 1] (quantizer.features)
    window: np.ndarray | None = None  # NeMo's STFT window [samples]

    @property
    def input_max(self) -> int:
        return 2 ** (self.input_bits - 1) - 1

    @property
    def output(self) -> str:
        return self.nodes[-1].name

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {
            f"front_end.{k}": v for k, v in (("filterbank", self.filterbank), ("window", self.window)) if v is not None
        }
        nodes = []
        for i, node in enumerate(self.nodes):
            arrays[f"n{i}.shift"] = node.shift
            terms = []
            for j, term in enumerate(node.terms):
                key = f"n{i}.t{j}"
                arrays[f"{key}.weight"] = term.weight
                arrays[f"{key}.bias"] = term.bias
                arrays[f"{key}.multiplier"] = term.multiplier
                arrays[f"{key}.weight_scale"] = term.weight_scale
                terms.append(
                    dict(
                        output_range=term.output_range,
                        source=term.source,
                        stride=term.stride,
                        dilation=term.dilation,
                        padding=term.padding,
                        groups=term.groups,
                    )
                )
            nodes.append(
                dict(
                    name=node.name,
                    relu=node.relu,
                    out_min=node.out_min,
                    out_max=node.out_max,
                    scale=node.scale,
                    bits=node.bits,
                    terms=terms,
                )
            )
        description = dict(
            format=FORMAT_NAME,
            version=FORMAT_VERSION,
            feat_in=self.feat_in,
            input_scale=self.input_scale,
            input_bits=self.input_bits,
            labels=self.labels,
            preprocessor=self.preprocessor,
            settings=self.settings,
            nodes=nodes,
        )
        np.savez(folder / WEIGHTS_FILE, **arrays)
        (folder / MODEL_FILE).write_text(json.dumps(description, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> IntegerModel:
        folder = Path(folder)
        try:
            description = json.loads((folder / MODEL_FILE).read_text())
        except FileNotFoundError as error:
            raise ArtifactError(f"{folder}: no {MODEL_FILE}: not an integer-model folder") from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ArtifactError(f"{folder / MODEL_FILE}: corrupt JSON: {error}") from error
        if description.get("format") != FORMAT_NAME or description.get("version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{folder / MODEL_FILE}: format {description.get('format')} v{description.get('version')}, "
                f"expected {FORMAT_NAME} v{FORMAT_VERSION}: quantize the checkpoint again"
            )
        try:
            with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as stored:
                arrays = {key: stored[key] for key in stored.files}
            nodes = [
                IntegerNode(
                    name=n["name"],
                    relu=n["relu"],
                    out_min=n["out_min"],
                    out_max=n["out_max"],
                    scale=n["scale"],
                    bits=n["bits"],
                    shift=arrays[f"n{i}.shift"],
                    terms=[
                        IntegerTerm(
                            source=t["source"],
                            stride=t["stride"],
                            dilation=t["dilation"],
                            padding=t["padding"],
                            groups=t["groups"],
                            weight=arrays[f"n{i}.t{j}.weight"],
                            bias=arrays[f"n{i}.t{j}.bias"],
                            multiplier=arrays[f"n{i}.t{j}.multiplier"],
                            weight_scale=arrays[f"n{i}.t{j}.weight_scale"],
                            output_range=t["output_range"],
                        )
                        for j, t in enumerate(n["terms"])
                    ],
                )
                for i, n in enumerate(description["nodes"])
            ]
        except (OSError, ValueError, KeyError, EOFError) as error:
            raise ArtifactError(f"{folder / WEIGHTS_FILE}: missing or corrupt: {error}") from error
        return cls(
            feat_in=description["feat_in"],
            input_scale=description["input_scale"],
            input_bits=description["input_bits"],
            nodes=nodes,
            labels=description["labels"],
            preprocessor=description["preprocessor"],
            settings=description["settings"],
            filterbank=arrays.get("front_end.filterbank"),
            window=arrays.get("front_end.window"),
        )
