"""ONNX graphs of a quantized model, one per backend, all with the same interface.

Inputs `features` float32 [B, F, T] and `lengths` int64 [B]; outputs `logits` [B, classes, T']
(int32 for `integer`, float32 otherwise), `tokens` int64 [B, T'] (argmax) and `out_lengths`
int64 [B]. Batch and time are dynamic; padded frames are zeroed before every conv that reads
neighbours, so a padded utterance gives what it gives alone.

- `integer`: strictly integer between the input quantization and the argmax. Activations are
  uint8 (after ReLU: the code; signed: code + 128), weights uint8 with zero point 128 (ORT's fast
  ConvInteger path), requantization `(sum_i acc_i * M_i + C) / 2^s` in int64 with the bias and
  rounding folded into C. Bit-exact with `quantizer.reference`.
- `integer-float`: the same arithmetic, bit for bit, on ORT's float kernels, several times faster
  than its integer ones for depthwise convs: activations are the integer values as float32, convs
  float32 where no partial sum can reach 2^24 (so every sum is exact, in any order), the
  requantization float64 where none can reach 2^53 (scaling by 2^-s is exact there); a term or
  node that could is left to ConvInteger or the int64 requantization. Bit-exact with the reference.
- `int8`: ORT's fused QLinearConv / QLinearAdd (u8 activations, per-channel weights as s8, or as
  u8 + 128 where the CPU's u8 x s8 kernels saturate: `quantizer.cpu.int8_weight_type`).
- `qdq`: symmetric QuantizeLinear/DequantizeLinear pairs around float convs (zero points 0), the
  form TensorRT's INT8 path takes.
- `fp32`: the BN-folded float graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from quantizer.cpu import INT8_WEIGHT_TYPES, int8_weight_type
from quantizer.graph import FEATURES, FloatGraph
from quantizer.integer_model import IntegerModel, IntegerNode

OPSET = 17
MS_DOMAIN = "com.microsoft"  # QLinearAdd
SIGNED_OFFSET = 128  # uint8 code of a signed activation's zero
INT8_WEIGHTS_PROP = "qasr.int8_weights"  # metadata of int8.onnx: its weight type
FLOAT_KERNELS_PROP = "qasr.float_kernels"  # metadata of integer-float.onnx: what runs on float kernels
FLOOR_OFFSET_LOG2 = 60  # makes int64 truncating division floor: sum_i acc_i * M_i < 2^59 always
FLOAT32_EXACT = 2**24  # float32 holds every integer up to this, so sums that stay below it are exact
FLOAT64_EXACT = 2**53  # the same for float64


class _Builder:
    """Accumulates nodes and initializers with short unique names (they are stored many times)."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, array: np.ndarray) -> str:
        self.count += 1
        name = f"k{self.count}"
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", **attrs) -> str:
        self.count += 1
        name = f"v{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [name], domain=domain or None, **attrs))
        return name

    def model(self, logits_type: int, name: str, opsets: dict[str, int] | None = None) -> onnx.ModelProto:
        inputs = [
            helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["batch", "features", "frames"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ]
        outputs = [
            helper.make_tensor_value_info("logits", logits_type, ["batch", "classes", "out_frames"]),
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "out_frames"]),
            helper.make_tensor_value_info("out_lengths", TensorProto.INT64, ["batch"]),
        ]
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        imports = [helper.make_opsetid("", OPSET)] + [helper.make_opsetid(d, v) for d, v in (opsets or {}).items()]
        model = helper.make_model(graph, opset_imports=imports, producer_name="qasr")
        model.ir_version = 9
        return model


class _Walker:
    """Shared bookkeeping of the exporters: the length and mask of every tensor, and the outputs."""

    def __init__(self, builder: _Builder):
        self.b = builder
        # tensors are [B, C, 1, T] inside the graph (see _conv_attrs)
        self.tensors = {FEATURES: builder.op("Unsqueeze", [FEATURES, builder.const(np.array([2], np.int64))])}
        self.lengths = {FEATURES: "lengths"}
        self.masks: dict[str, str] = {}  # lengths tensor -> [B, 1, 1, T] bool

    def mask(self, source: str) -> str:
        lengths = self.lengths[source]
        if lengths not in self.masks:
            b = self.b
            frames = b.op("Gather", [b.op("Shape", [self.tensors[source]]), b.const(np.array(3, np.int64))])
            steps = b.op("Range", [b.const(np.array(0, np.int64)), frames, b.const(np.array(1, np.int64))])
            valid = b.op(
                "Less",
                [
                    b.op("Unsqueeze", [steps, b.const(np.array([0], np.int64))]),
                    b.op("Unsqueeze", [lengths, b.const(np.array([1], np.int64))]),
                ],
            )
            self.masks[lengths] = b.op("Unsqueeze", [valid, b.const(np.array([1, 2], np.int64))])
        return self.masks[lengths]

    def masked(self, term, zero: np.ndarray) -> str:
        """The term's input with padded frames set to `zero` where the kernel reads neighbours."""
        x = self.tensors[term.source]
        if not term.masks_input:
            return x
        return self.b.op("Where", [self.mask(term.source), x, self.b.const(zero)])

    def out_lengths(self, name: str, term) -> None:
        lengths = self.lengths[term.source]
        if not term.keeps_length:  # NeMo's length formula, in int64
            b = self.b
            shifted = b.op(
                "Add", [lengths, b.const(np.array(2 * term.padding - term.dilation * (term.kernel - 1) - 1))]
            )
            lengths = b.op(
                "Add",
                [b.op("Div", [shifted, b.const(np.array(term.stride, np.int64))]), b.const(np.array(1, np.int64))],
            )
        self.lengths[name] = lengths

    def finish(self, logits: str, last: str, logits_type: int, name: str, opsets=None) -> onnx.ModelProto:
        b = self.b
        b.nodes.append(helper.make_node("Squeeze", [logits, b.const(np.array([2], np.int64))], ["logits"]))
        b.nodes.append(helper.make_node("ArgMax", ["logits"], ["tokens"], axis=1, keepdims=0))
        b.nodes.append(helper.make_node("Identity", [self.lengths[last]], ["out_lengths"]))
        return b.model(logits_type, name, opsets)


def _channel(values: np.ndarray, dtype) -> np.ndarray:
    """[C] -> [1, C, 1, 1], to broadcast over [B, C, 1, T]."""
    return np.asarray(values).astype(dtype).reshape(1, -1, 1, 1)


def _kernel(weight: np.ndarray) -> np.ndarray:
    """[C_out, C_in, K] -> [C_out, C_in, 1, K]."""
    return weight[:, :, None, :]


def _conv_attrs(term) -> dict:
    """1-D convs run as 2-D convs of height 1: ORT's 2-D kernels (depthwise above all) are far faster."""
    return dict(
        strides=[1, term.stride],
        dilations=[1, term.dilation],
        pads=[0, term.padding, 0, term.padding],
        group=term.groups,
        kernel_shape=[1, term.kernel],
    )


def _is_signed_source(model: IntegerModel, source: str) -> bool:
    return source == FEATURES or next(n for n in model.nodes if n.name == source).signed


def _widened(b: _Builder, values: np.ndarray, dtype) -> str:
    if not (values.astype(dtype) == values).all():
        raise ValueError(
            f"a per-channel constant does not fit {np.dtype(dtype).name}: was the model quantized by qasr?"
        )
    """A per-channel constant stored as `dtype` (small file) and cast to int64 in the graph;
    ORT folds the cast when it loads the session."""
    return b.op("Cast", [b.const(_channel(values, dtype))], to=TensorProto.INT64)


def _power_of_two(b: _Builder, exponents: np.ndarray) -> str:
    """2^e per channel as int64 from uint8 exponents (folded at load like _widened)."""
    one = b.const(np.array(1, np.uint64))
    shifted = b.op(
        "BitShift",
        [one, b.op("Cast", [b.const(_channel(exponents, np.uint8))], to=TensorProto.UINT64)],
        direction="LEFT",
    )
    return b.op("Cast", [shifted], to=TensorProto.INT64)


def _unsigned(weight: np.ndarray) -> np.ndarray:
    """int8 weight codes as uint8 code + 128 (to be read with zero point 128)."""
    return (weight.astype(np.int16) + SIGNED_OFFSET).astype(np.uint8)


def _conv_integer(b: _Builder, x: str, term, zero_point: np.ndarray) -> str:
    """int32 accumulators of a uint8 input; weights go in as uint8 + 128 with zero point 128,
    the fast ConvInteger path (int8 weights there are several times slower)."""
    return b.op(
        "ConvInteger",
        [x, b.const(_kernel(_unsigned(term.weight))), b.const(zero_point), b.const(np.array(SIGNED_OFFSET, np.uint8))],
        **_conv_attrs(term),
    )


def _integer_requantize(b: _Builder, products: list[str], biases: list[str], node: IntegerNode, stored: int) -> str:
    """sum_i acc_i * M_i + sum_i B_i * M_i (int64) -> the node's output value + `stored` (int64),
    exactly as the reference rounds: floor((. + 2^(s-1)) / 2^s), ReLU, clamp."""
    divisor = _power_of_two(b, node.shift)
    addend = b.op("Div", [divisor, b.const(np.array(2, np.int64))])  # 2^(s-1): round half up
    addend = _sum(b, [addend, *biases])
    lift = None
    if not node.relu:
        # Div truncates toward zero; adding a multiple of 2^s that keeps the dividend non-negative
        # (|sum| < 2^59) turns truncation into floor. After ReLU truncation already equals floor.
        offset = _power_of_two(b, np.maximum(node.shift, FLOOR_OFFSET_LOG2))
        addend = b.op("Add", [addend, offset])
        lift = b.op("Sub", [b.op("Div", [offset, divisor]), b.const(np.array(stored, np.int64))])
    quotient = b.op("Div", [b.op("Add", [_sum(b, products), addend]), divisor])
    code = b.op("Sub", [quotient, lift]) if lift is not None else quotient
    low, high = (b.const(np.array(v + stored, np.int64)) for v in (node.out_min, node.out_max))
    return b.op("Clip", [code, low, high])


def export_integer(model: IntegerModel) -> onnx.ModelProto:
    """The strictly integer graph (see the module docstring); bit-exact with the reference."""
    b = _Builder()
    w = _Walker(b)
    scaled = b.op("Div", [w.tensors[FEATURES], b.const(np.array(model.input_scale, np.float32))])
    rounded = b.op("Floor", [b.op("Add", [scaled, b.const(np.array(0.5, np.float32))])])
    clipped = b.op(
        "Clip",
        [rounded, b.const(np.array(-model.input_max, np.float32)), b.const(np.array(model.input_max, np.float32))],
    )
    codes = b.op("Add", [clipped, b.const(np.array(SIGNED_OFFSET, np.float32))])
    w.tensors[FEATURES] = b.op("Cast", [codes], to=TensorProto.UINT8)
    for node in model.nodes:
        accumulators = []
        for term in node.terms:
            zero_point = np.array(SIGNED_OFFSET if _is_signed_source(model, term.source) else 0, np.uint8)
            accumulators.append(_conv_integer(b, w.masked(term, zero_point), term, zero_point))
        stored = 0 if node.relu or node.bits > 8 else SIGNED_OFFSET  # uint8 code of a signed zero
        code = _integer_requantize(b, *_int64_products(b, accumulators, node), node, stored)
        w.tensors[node.name] = b.op("Cast", [code], to=TensorProto.INT32 if node.bits > 8 else TensorProto.UINT8)
        w.out_lengths(node.name, node.terms[0])
    return w.finish(w.tensors[model.output], model.output, TensorProto.INT32, "qasr-integer")


def _int64_products(b: _Builder, accumulators: list[str], node: IntegerNode) -> tuple[list[str], list[str]]:
    """Accumulators -> acc_i * M_i and B_i * M_i in int64, for _integer_requantize."""
    products, biases = [], []
    for acc, term in zip(accumulators, node.terms, strict=True):
        multiplier = _widened(b, term.multiplier, np.int32)
        products.append(b.op("Mul", [b.op("Cast", [acc], to=TensorProto.INT64), multiplier]))
        if term.bias.any():
            biases.append(b.op("Mul", [_widened(b, term.bias, np.int32), multiplier]))
    return products, biases


def _value_bound(model: IntegerModel, source: str) -> int:
    """The largest |value| a source's activations take."""
    if source == FEATURES:
        return model.input_max
    node = next(n for n in model.nodes if n.name == source)
    return max(abs(node.out_min), abs(node.out_max))


def _accumulator_bound(model: IntegerModel, term) -> np.ndarray:
    """Per output channel, the largest |partial sum| of a term's conv, bias left out: Python ints [C_out]."""
    absolute_weights = np.abs(term.weight.astype(np.int64)).reshape(len(term.weight), -1).sum(axis=1)
    return absolute_weights.astype(object) * _value_bound(model, term.source)


def _accumulator(b: _Builder, w: _Walker, model: IntegerModel, term, bound: np.ndarray) -> str:
    """A term's conv of integer values held as float32 -> its accumulators (bias left out) as float64.

    Where every partial sum stays below 2^24 in magnitude, a float32 conv adds integers exactly in
    any order, so ORT's float kernels (several times faster than ConvInteger on depthwise convs)
    give the integer result; otherwise ConvInteger on uint8 codes (weights + 128, zero point 128).
    bound: _accumulator_bound of the term."""
    x = w.masked(term, np.array(0.0, np.float32))
    if bound.max() < FLOAT32_EXACT:
        weight = b.op("Cast", [b.const(_kernel(term.weight))], to=TensorProto.FLOAT)  # int8 in the file, folded at load
        return b.op("Cast", [b.op("Conv", [x, weight], **_conv_attrs(term))], to=TensorProto.DOUBLE)
    zero_point = np.array(SIGNED_OFFSET if _is_signed_source(model, term.source) else 0, np.uint8)
    codes = b.op("Cast", [b.op("Add", [x, b.const(zero_point.astype(np.float32))])], to=TensorProto.UINT8)
    return b.op("Cast", [_conv_integer(b, codes, term, zero_point)], to=TensorProto.DOUBLE)


def _requantize_float64(b: _Builder, accumulators: list[str], node: IntegerNode) -> str:
    """floor((sum_i (acc_i + B_i) * M_i + 2^(s-1)) / 2^s), ReLU, clamp, as float64: exact while
    every partial sum stays below 2^53 (checked by the caller), since the scaling by 2^-s is exact."""
    step = np.ldexp(1.0, -node.shift)  # 2^-s per channel, float64 [C]
    products = [
        b.op("Mul", [acc, b.const(_channel(np.ldexp(t.multiplier.astype(np.float64), -node.shift), np.float64))])
        for acc, t in zip(accumulators, node.terms, strict=True)
    ]
    addend = sum(t.bias.astype(np.int64) * t.multiplier for t in node.terms) + (np.int64(1) << (node.shift - 1))
    total = b.op("Add", [_sum(b, products), b.const(_channel(addend.astype(np.float64) * step, np.float64))])
    low = max(node.out_min, 0) if node.relu else node.out_min
    bounds = [b.const(np.array(v, np.float64)) for v in (low, node.out_max)]
    return b.op("Clip", [b.op("Floor", [total]), *bounds])


def _sum_bound(node: IntegerNode, accumulator_bounds: list[np.ndarray]) -> int:
    """The largest |partial sum| of a node's requantization, in units of 2^-s (exact integers)."""
    total = sum(
        (bound + np.abs(t.bias.astype(object))) * t.multiplier.astype(object)
        for bound, t in zip(accumulator_bounds, node.terms, strict=True)
    )
    return max(total + (1 << (node.shift.astype(object) - 1)))


def export_integer_float(model: IntegerModel) -> onnx.ModelProto:
    """The integer model's arithmetic on float kernels (see the module docstring); bit-exact with
    the reference by the bounds checked here, node by node."""
    b = _Builder()
    w = _Walker(b)
    scaled = b.op("Div", [w.tensors[FEATURES], b.const(np.array(model.input_scale, np.float32))])
    rounded = b.op("Floor", [b.op("Add", [scaled, b.const(np.array(0.5, np.float32))])])
    w.tensors[FEATURES] = b.op(
        "Clip",
        [rounded, b.const(np.array(-model.input_max, np.float32)), b.const(np.array(model.input_max, np.float32))],
    )
    float64_nodes = 0
    for node in model.nodes:
        is_output = node.name == model.output
        if not is_output and max(abs(node.out_min), abs(node.out_max)) > FLOAT32_EXACT:
            raise ValueError(f"{node.name}: activations up to {node.out_max} are not exact as float32")
        bounds = [_accumulator_bound(model, term) for term in node.terms]
        accumulators = [_accumulator(b, w, model, term, bound) for term, bound in zip(node.terms, bounds, strict=True)]
        if _sum_bound(node, bounds) < FLOAT64_EXACT:
            value = _requantize_float64(b, accumulators, node)
            float64_nodes += 1
        else:
            value = _integer_requantize(b, *_int64_products(b, accumulators, node), node, stored=0)
        w.tensors[node.name] = b.op("Cast", [value], to=TensorProto.INT32 if is_output else TensorProto.FLOAT)
        w.out_lengths(node.name, node.terms[0])
    proto = w.finish(w.tensors[model.output], model.output, TensorProto.INT32, "qasr-integer-float")
    convs = sum(len(node.terms) for node in model.nodes)
    float_convs = sum(node.op_type == "Conv" for node in proto.graph.node)
    summary = (
        f"{float_convs} of {convs} convs in float32, {float64_nodes} of {len(model.nodes)} requantizations in float64"
    )
    helper.set_model_props(proto, {FLOAT_KERNELS_PROP: summary})
    return proto


def _term_conv_float(b: _Builder, w: _Walker, term, weight: str, bias: np.ndarray) -> str:
    x = w.masked(term, np.array(0.0, np.float32))
    return b.op("Conv", [x, weight, b.const(bias.astype(np.float32))], **_conv_attrs(term))


def _sum(b: _Builder, values: list[str]) -> str:
    total = values[0]
    for value in values[1:]:
        total = b.op("Add", [total, value])
    return total


def export_fp32(graph: FloatGraph) -> onnx.ModelProto:
    """The BN-folded float graph: the baseline every backend is compared with."""
    b = _Builder()
    w = _Walker(b)
    for node in graph.nodes:
        outputs = [_term_conv_float(b, w, t, b.const(_kernel(t.weight.astype(np.float32))), t.bias) for t in node.terms]
        y = _sum(b, outputs)
        w.tensors[node.name] = b.op("Relu", [y]) if node.relu else y
        w.out_lengths(node.name, node.terms[0])
    return w.finish(w.tensors[graph.output], graph.output, TensorProto.FLOAT, "qasr-fp32")


def _scales(model: IntegerModel) -> dict[str, float]:
    return {FEATURES: model.input_scale} | {node.name: node.scale for node in model.nodes}


def export_qdq(model: IntegerModel) -> onnx.ModelProto:
    """Symmetric int8 QuantizeLinear/DequantizeLinear around float convs (zero points 0), for TensorRT.

    Activations after ReLU are int8 here too (scale range / 127): TensorRT takes symmetric int8 only.
    """
    b = _Builder()
    w = _Walker(b)
    scales = _scales(model)
    zero = b.const(np.array(0, np.int8))

    def fake_quantize(x: str, scale: float) -> str:
        step = b.const(np.array(scale, np.float32))
        return b.op("DequantizeLinear", [b.op("QuantizeLinear", [x, step, zero]), step, zero])

    w.tensors[FEATURES] = fake_quantize(w.tensors[FEATURES], model.input_scale)
    for node in model.nodes:
        outputs = []
        for term in node.terms:
            weight = b.op(
                "DequantizeLinear",
                [
                    b.const(_kernel(term.weight)),
                    b.const(term.weight_scale.astype(np.float32)),
                    b.const(np.zeros(term.weight.shape[0], np.int8)),
                ],
                axis=0,
            )
            bias = term.bias * scales[term.source] * term.weight_scale
            outputs.append(_term_conv_float(b, w, term, weight, bias))
        y = _sum(b, outputs)
        if node.relu:
            y = b.op("Relu", [y])
        if node.name != model.output:
            y = fake_quantize(y, node.scale * node.out_max / (2 ** (node.bits - 1) - 1))
        w.tensors[node.name] = y
        w.out_lengths(node.name, node.terms[0])
    return w.finish(w.tensors[model.output], model.output, TensorProto.FLOAT, "qasr-qdq")


def export_int8(model: IntegerModel, weights: str = "s8") -> onnx.ModelProto:
    """ORT's fused INT8 operators built from the same quantized parameters (not bit-exact).

    Every node output is uint8 (zero point 0 after ReLU, so saturation is the ReLU; 128 when
    signed). A multi-term node quantizes each branch at its calibrated range and adds them with
    QLinearAdd. The decoder accumulates with ConvInteger and scales to float logits. weights:
    `s8` (codes, zero point 0) or `u8` (codes + 128, zero point 128; the same values).
    """
    if weights not in INT8_WEIGHT_TYPES:
        raise ValueError(f"int8 weights must be one of {INT8_WEIGHT_TYPES}, got '{weights}'")
    unsigned = weights == "u8"
    b = _Builder()
    w = _Walker(b)
    scales = _scales(model)
    zero_points = {FEATURES: SIGNED_OFFSET} | {n.name: 0 if n.relu else SIGNED_OFFSET for n in model.nodes}

    def u8(value: int) -> str:
        return b.const(np.array(value, np.uint8))

    def f32(value: float) -> str:
        return b.const(np.array(value, np.float32))

    w.tensors[FEATURES] = b.op("QuantizeLinear", [w.tensors[FEATURES], f32(model.input_scale), u8(SIGNED_OFFSET)])
    for node in model.nodes:
        if node.name == model.output:
            (term,) = node.terms
            zero_point = np.array(zero_points[term.source], np.uint8)
            acc = _conv_integer(b, w.masked(term, zero_point), term, zero_point)
            acc = b.op("Add", [acc, b.const(_channel(term.bias, np.int32))])
            real = _channel(scales[term.source] * term.weight_scale, np.float32)
            w.tensors[node.name] = b.op("Mul", [b.op("Cast", [acc], to=TensorProto.FLOAT), b.const(real)])
            w.out_lengths(node.name, term)
            continue
        single = len(node.terms) == 1
        branches = []  # (tensor, scale, zero point)
        for term in node.terms:
            scale = node.scale if single else max(term.output_range, 1e-8) / 127
            zero_point = zero_points[node.name] if single else SIGNED_OFFSET
            x = w.masked(term, np.array(zero_points[term.source], np.uint8))
            y = b.op(
                "QLinearConv",
                [
                    x,
                    f32(scales[term.source]),
                    u8(zero_points[term.source]),
                    b.const(_kernel(_unsigned(term.weight) if unsigned else term.weight)),
                    b.const(term.weight_scale.astype(np.float32)),
                    b.const(np.array(SIGNED_OFFSET, np.uint8) if unsigned else np.array(0, np.int8)),
                    f32(scale),
                    u8(zero_point),
                ]
                + ([b.const(term.bias)] if term.bias.any() else []),
                **_conv_attrs(term),
            )
            branches.append((y, scale, zero_point))
        total, total_scale, total_zero = branches[0]
        reach = node.terms[0].output_range
        for index, (y, scale, zero_point) in enumerate(branches[1:], start=1):
            last = index == len(branches) - 1
            reach += node.terms[index].output_range
            out_scale = node.scale if last else reach / 127
            out_zero = zero_points[node.name] if last else SIGNED_OFFSET
            total = b.op(
                "QLinearAdd",
                [total, f32(total_scale), u8(total_zero), y, f32(scale), u8(zero_point), f32(out_scale), u8(out_zero)],
                domain=MS_DOMAIN,
            )
            total_scale, total_zero = out_scale, out_zero
        w.tensors[node.name] = total
        w.out_lengths(node.name, node.terms[0])
    proto = w.finish(w.tensors[model.output], model.output, TensorProto.FLOAT, "qasr-int8", {MS_DOMAIN: 1})
    helper.set_model_props(proto, {INT8_WEIGHTS_PROP: weights})
    return proto


BACKEND_FILES = {
    "integer": "integer.onnx",
    "integer-float": "integer-float.onnx",
    "int8": "int8.onnx",
    "qdq": "qdq.onnx",
    "fp32": "fp32.onnx",
}
INTEGER_BACKENDS = ("integer", "integer-float")  # bit-exact with the reference: int32 logits in output steps


def export_backend(backend: str, model: IntegerModel, graph: FloatGraph, int8_weights: str = "s8") -> onnx.ModelProto:
    if backend == "fp32":
        return export_fp32(graph)
    if backend == "int8":
        return export_int8(model, int8_weights)
    exporters = {"integer": export_integer, "integer-float": export_integer_float, "qdq": export_qdq}
    if backend not in exporters:
        raise ValueError(f"unknown backend '{backend}': choose one of {', '.join(BACKEND_FILES)}")
    return exporters[backend](model)


def write_backends(folder, model: IntegerModel, graph: FloatGraph, int8_weights: str | None = None) -> dict[str, int]:
    """Write every backend's graph into the model folder; returns file sizes in bytes.
    int8_weights: `s8` or `u8`; None picks what suits this CPU (`quantizer.cpu.int8_weight_type`)."""
    int8_weights = int8_weights or int8_weight_type()
    sizes = {}
    for backend, file_name in BACKEND_FILES.items():
        path = Path(folder) / file_name
        onnx.save(export_backend(backend, model, graph, int8_weights), str(path))
        sizes[backend] = path.stat().st_size
    return sizes
