"""The BN-folded float graph of a NeMo ConvASR CTC model.

A graph is a list of nodes in execution order. Each node sums one or more 1-D convolution
terms (each reading an earlier tensor, masked to its valid frames) and optionally applies
ReLU. That one shape covers a QuartzNet/Jasper repeat, a residual block end (main branch
plus one pane per residual input: dense for JasperDR) and the CTC decoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from quantizer.checkpoint import NemoCheckpoint, UnsupportedModelError
from quantizer.fft_conv import depthwise_conv1d_fft, is_depthwise

FEATURES = "features"  # name of the graph input [B, n_mels, frames]
BN_EPS = 1e-3  # NeMo's JasperBlock builds BatchNorm1d(eps=1e-3); eps is not saved in checkpoints

_SUPPORTED_MODEL = "EncDecCTCModel"
_SUPPORTED_ENCODER = "ConvASREncoder"
_SUPPORTED_DECODER = "ConvASRDecoder"


class ConvShape:
    """Length arithmetic shared by float and integer conv terms (both have weight [C_out, C_in, K])."""

    weight: np.ndarray
    stride: int
    dilation: int
    padding: int
    groups: int

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[2])

    @property
    def depthwise(self) -> bool:
        """One filter per channel: input channel c feeds output channel c only."""
        return self.groups > 1 and self.groups == self.weight.shape[0] and self.weight.shape[1] == 1

    @property
    def masks_input(self) -> bool:
        """Only a kernel wider than one frame lets padded frames reach valid outputs, so only it masks."""
        return self.kernel > 1

    @property
    def keeps_length(self) -> bool:
        return self.stride == 1 and 2 * self.padding == self.dilation * (self.kernel - 1)

    def out_lengths(self, lengths):
        """NeMo's MaskedConv1d.get_seq_len (lengths are non-negative, so // is its trunc); also frame counts."""
        return (lengths + 2 * self.padding - self.dilation * (self.kernel - 1) - 1) // self.stride + 1


@dataclass
class ConvTerm(ConvShape):
    """One convolution of a node: `weight * masked(source) + bias`, BN already folded in."""

    source: str
    weight: np.ndarray  # float32 [C_out, C_in / groups, K]
    bias: np.ndarray  # float32 [C_out]
    stride: int = 1
    dilation: int = 1
    padding: int = 0
    groups: int = 1
    # BatchNorm running statistics expressed in the folded output's domain (mean beta, std
    # |gamma| sigma / sqrt(var + eps)); None for a conv that feeds no BatchNorm.
    bn_mean: np.ndarray | None = None
    bn_std: np.ndarray | None = None


@dataclass
class Node:
    name: str
    terms: list[ConvTerm]
    relu: bool


@dataclass
class FloatGraph:
    feat_in: int  # mel bins of the input features
    nodes: list[Node]
    labels: list[str]  # CTC vocabulary; blank is the last class
    preprocessor: dict = field(default_factory=dict)
    # NeMo's own mel filterbank [n_mels, n_fft / 2 + 1] and window [samples], for quantizer.features
    filterbank: np.ndarray | None = None
    window: np.ndarray | None = None

    @property
    def output(self) -> str:
        return self.nodes[-1].name

    def parameter_count(self) -> int:
        return sum(t.weight.size + t.bias.size for n in self.nodes for t in n.terms)


def _short_target(section: dict, what: str) -> str:
    target = section.get("_target_") or section.get("target") or ""
    if not target:
        raise UnsupportedModelError(f"the {what} config names no _target_ class")
    return str(target).rsplit(".", 1)[-1]


def _first(value) -> int:
    return int(value[0]) if isinstance(value, (list, tuple)) else int(value)


def _kernel_size(value, factor: float) -> int:
    kernel = max(int(_first(value) * factor), 1)
    return kernel + 1 if kernel % 2 == 0 else kernel  # NeMo's compute_new_kernel_size


class _StateReader:
    """Takes tensors from a state dict by name, with errors that name what is missing."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def get(self, key: str) -> np.ndarray:
        if key not in self.state:
            raise UnsupportedModelError(f"the checkpoint has no weight '{key}' that its config implies")
        return self.state[key].detach().to(torch.float64).numpy()

    def conv(self, prefix: str) -> np.ndarray:
        return self.get(f"{prefix}.conv.weight")

    def batch_norm(self, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return tuple(self.get(f"{prefix}.{n}") for n in ("weight", "bias", "running_mean", "running_var"))


def fold_batch_norm(
    weight: np.ndarray, bias: np.ndarray, gamma, beta, mean, var
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fold BN into the conv before it: W' = W g / sqrt(v + eps), b' = (b - mu) g / sqrt(v + eps) + beta.

    Returns the folded weight and bias (float32) and the BN target statistics in the folded domain.
    """
    scale = gamma / np.sqrt(var + BN_EPS)
    folded_weight = weight * scale[:, None, None]
    folded_bias = (bias - mean) * scale + beta
    target_std = np.abs(gamma) * np.sqrt(var) / np.sqrt(var + BN_EPS)
    return (
        folded_weight.astype(np.float32),
        folded_bias.astype(np.float32),
        beta.astype(np.float32),
        target_std.astype(np.float32),
    )


def _check_block(index: int, block: dict, encoder: dict) -> None:
    where = f"encoder block {index}"
    if block.get("se", False):
        raise UnsupportedModelError(f"{where}: SqueezeExcite (se: true) is not supported")
    if int(block.get("groups", 1)) != 1:
        raise UnsupportedModelError(f"{where}: grouped pointwise convolutions (groups > 1) are not supported")
    if int(block.get("heads", -1)) != -1:
        raise UnsupportedModelError(f"{where}: depthwise 'heads' are not supported")
    if int(block.get("future_context", -1)) >= 0:
        raise UnsupportedModelError(f"{where}: asymmetric padding (future_context) is not supported")
    if block.get("stride_last", False):
        raise UnsupportedModelError(f"{where}: stride_last is not supported")
    mode = block.get("residual_mode", encoder.get("residual_mode", "add"))
    if block.get("residual", False) and mode not in ("add", "stride_add"):
        raise UnsupportedModelError(f"{where}: residual_mode '{mode}' is not supported (only add, stride_add)")
    for key in ("kernel", "stride", "dilation"):
        if isinstance(block.get(key), (list, tuple)) and len(block[key]) != 1:
            raise UnsupportedModelError(f"{where}: '{key}' must be one value for 1-D convolutions")


def _check_model(config: dict) -> None:
    model = _short_target(config, "model") if ("target" in config or "_target_" in config) else _SUPPORTED_MODEL
    if model != _SUPPORTED_MODEL:
        raise UnsupportedModelError(
            f"model class {model} is not supported: only character CTC models ({_SUPPORTED_MODEL}) "
            "with a ConvASREncoder and a ConvASRDecoder"
        )
    for section, expected in (("encoder", _SUPPORTED_ENCODER), ("decoder", _SUPPORTED_DECODER)):
        if not isinstance(config.get(section), dict):
            raise UnsupportedModelError(f"the model config has no '{section}' section")
        found = _short_target(config[section], section)
        if found != expected:
            raise UnsupportedModelError(f"{section} {found} is not supported: only {expected}")
    encoder = config["encoder"]
    if encoder.get("activation", "relu") != "relu":
        raise UnsupportedModelError(f"activation '{encoder['activation']}' is not supported: only relu")
    if encoder.get("normalization_mode", "batch") != "batch":
        raise UnsupportedModelError(
            f"normalization '{encoder['normalization_mode']}' is not supported: only batch norm, which folds"
        )
    if int(encoder.get("frame_splicing", 1)) != 1:
        raise UnsupportedModelError("frame_splicing > 1 is not supported")
    if encoder.get("quantize", False):
        raise UnsupportedModelError("encoders built with NeMo's own fake quantization are not supported")


def build_float_graph(checkpoint: NemoCheckpoint) -> FloatGraph:
    """Walk NeMo's ConvASREncoder/ConvASRDecoder layout and fold every BatchNorm."""
    config = checkpoint.config
    _check_model(config)
    encoder, decoder = config["encoder"], config["decoder"]
    reader = _StateReader(checkpoint.state)
    nodes: list[Node] = []
    channels = int(encoder["feat_in"])
    dense_channels: list[int] = []  # inputs of dense-residual blocks so far (NeMo's residual_panes)
    block_inputs = [FEATURES]  # NeMo's `xs`: the tensors a residual pane may read

    def conv_bn(prefix: str, bn_prefix: str, source: str, **geometry) -> ConvTerm:
        weight = reader.conv(prefix)
        folded, bias, bn_mean, bn_std = fold_batch_norm(
            weight, np.zeros(weight.shape[0]), *reader.batch_norm(bn_prefix)
        )
        return ConvTerm(source, folded, bias, bn_mean=bn_mean, bn_std=bn_std, **geometry)

    for index, block in enumerate(encoder["jasper"]):
        _check_block(index, block, encoder)
        prefix = f"encoder.encoder.{index}"
        kernel = _kernel_size(block["kernel"], float(block.get("kernel_size_factor", 1.0)))
        stride, dilation = _first(block["stride"]), _first(block["dilation"])
        if stride > 1 and dilation > 1:
            raise UnsupportedModelError(f"encoder block {index}: stride and dilation both > 1")
        padding = dilation * (kernel - 1) // 2
        separable = bool(block.get("separable", False))
        filters, repeat = int(block["filters"]), int(block["repeat"])
        residual = bool(block.get("residual", False))
        dense = residual and bool(block.get("residual_dense", False))
        if dense:
            dense_channels.append(channels)
        source = block_inputs[-1]
        module = 0  # index into NeMo's block.mconv ModuleList
        geometry = dict(stride=stride, dilation=dilation, padding=padding)
        for r in range(repeat):
            name = f"block{index}.repeat{r}"
            last = r == repeat - 1
            if separable:
                depthwise = reader.conv(f"{prefix}.mconv.{module}")
                nodes.append(
                    Node(
                        f"{name}.depthwise",
                        [
                            ConvTerm(
                                source,
                                depthwise.astype(np.float32),
                                np.zeros(depthwise.shape[0], np.float32),
                                groups=depthwise.shape[0],
                                **geometry,
                            )
                        ],
                        relu=False,
                    )
                )
                main = conv_bn(f"{prefix}.mconv.{module + 1}", f"{prefix}.mconv.{module + 2}", f"{name}.depthwise")
                module += 3
            else:
                main = conv_bn(f"{prefix}.mconv.{module}", f"{prefix}.mconv.{module + 1}", source, **geometry)
                module += 2
            terms = [main]
            if last and residual:
                panes = block_inputs if dense else [block_inputs[-1]]
                res_stride = (
                    stride if block.get("residual_mode", encoder.get("residual_mode", "add")) == "stride_add" else 1
                )
                for p, pane_source in enumerate(panes):
                    terms.append(conv_bn(f"{prefix}.res.{p}.0", f"{prefix}.res.{p}.1", pane_source, stride=res_stride))
            nodes.append(Node(name, terms, relu=True))
            module += 0 if last else 2  # ReLU and Dropout between repeats
            source = name
            channels = filters
        block_inputs = block_inputs + [source] if dense else [source]

    labels = [str(label) for label in (decoder.get("vocabulary") or config.get("labels") or [])]
    weight = reader.get("decoder.decoder_layers.0.weight")
    bias = reader.get("decoder.decoder_layers.0.bias")
    if labels and weight.shape[0] != len(labels) + 1:
        raise UnsupportedModelError(
            f"decoder has {weight.shape[0]} classes but the vocabulary has {len(labels)} labels plus blank"
        )
    nodes.append(Node("decoder", [ConvTerm(source, weight.astype(np.float32), bias.astype(np.float32))], relu=False))
    state = checkpoint.state
    return FloatGraph(
        feat_in=int(encoder["feat_in"]),
        nodes=nodes,
        labels=labels,
        preprocessor=dict(config.get("preprocessor") or {}),
        filterbank=state["preprocessor.featurizer.fb"].numpy()[0] if "preprocessor.featurizer.fb" in state else None,
        window=state["preprocessor.featurizer.window"].numpy() if "preprocessor.featurizer.window" in state else None,
    )


def term_key(node: str, term: int) -> str:
    """Name of one term's output inside a multi-term node (for ranges of branches before their sum)."""
    return f"{node}/term{term}"


def input_batches(
    features: np.ndarray, lengths: np.ndarray, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(features [b, F, T], lengths [b]) tensors of consecutive batches of at most batch_size inputs."""
    for start in range(0, len(features), batch_size):
        yield (
            torch.from_numpy(features[start : start + batch_size]),
            torch.from_numpy(lengths[start : start + batch_size]),
        )


def valid_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, T] bool: frame t of utterance b is inside its length."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


class FloatModel(torch.nn.Module):
    """Runs a FloatGraph in PyTorch, zeroing padded frames before every conv that reads neighbours;
    depthwise convs run by FFT (quantizer.fft_conv), several times faster on CPUs."""

    def __init__(self, graph: FloatGraph):
        super().__init__()
        self.graph = graph
        for i, node in enumerate(graph.nodes):
            for j, term in enumerate(node.terms):
                self.register_buffer(f"w{i}_{j}", torch.from_numpy(term.weight))
                self.register_buffer(f"b{i}_{j}", torch.from_numpy(term.bias))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, on_term=None, on_node=None):
        """features [B, F, T] float, lengths [B] -> (logits [B, classes, T'], lengths [B]).

        on_term(node_index, term_index, output, lengths) and on_node(name, output, lengths) observe
        the per-term outputs (before summing) and the node outputs.
        """
        tensors = {FEATURES: (features, lengths)}
        for i, node in enumerate(self.graph.nodes):
            total = None
            for j, term in enumerate(node.terms):
                x, x_lengths = tensors[term.source]
                if term.masks_input:
                    x = x * valid_mask(x_lengths, x.shape[2])[:, None, :].to(x.dtype)
                weight, bias = getattr(self, f"w{i}_{j}"), getattr(self, f"b{i}_{j}")
                if is_depthwise(weight, term.groups, term.stride):
                    y = depthwise_conv1d_fft(x, weight, bias, term.padding, term.dilation)
                else:
                    y = torch.nn.functional.conv1d(
                        x,
                        weight,
                        bias,
                        stride=term.stride,
                        padding=term.padding,
                        dilation=term.dilation,
                        groups=term.groups,
                    )
                out_lengths = term.out_lengths(x_lengths)
                if on_term is not None:
                    on_term(i, j, y, out_lengths)
                total = y if total is None else total + y
            if node.relu:
                total = torch.relu(total)
            tensors[node.name] = (total, out_lengths)
            if on_node is not None:
                on_node(node.name, total, out_lengths)
        return tensors[self.graph.output]
