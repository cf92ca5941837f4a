"""Run a backend's ONNX graph with ONNX Runtime: features [B, F, T] + lengths -> token ids.

Backends: `integer`, `integer-float` and `int8` run on the CPU (the CUDA provider has no ConvInteger,
QLinearConv or QLinearAdd kernels, and cuDNN's TF32 and Winograd convolutions may not keep
`integer-float` exact: untried); `qdq` and `fp32` prefer TensorRT, then CUDA, then the CPU.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantizer.cpu import int8_weight_type
from quantizer.integer_model import IntegerModel
from quantizer.onnx_export import BACKEND_FILES, FLOAT_KERNELS_PROP, INT8_WEIGHTS_PROP, INTEGER_BACKENDS

BACKENDS = tuple(BACKEND_FILES)
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
# cuDNN's heuristic algorithm choice instead of its exhaustive search: on an H100 (ORT 1.31.1,
# cuDNN 9.14) a new input length then costs 0.05-0.34 s once instead of about 3 s, and warmed-up
# runs of the shipped model take the same 1-4 ms either way.
PROVIDER_OPTIONS = {"CUDAExecutionProvider": {"cudnn_conv_algo_search": "HEURISTIC"}}
PREFERENCE = {
    "integer": ("cpu",),
    "integer-float": ("cpu",),
    "int8": ("cpu",),
    "qdq": ("tensorrt", "cuda", "cpu"),
    "fp32": ("tensorrt", "cuda", "cpu"),
}

TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so")  # what ORT's TensorRT provider dlopens

log = logging.getLogger("qasr.runtime")


class ProviderError(RuntimeError):
    """The requested execution provider is missing, or cannot run the requested backend."""


def usable_providers(listed: list[str] | None = None, load: Callable[[str], object] = ctypes.CDLL) -> list[str]:
    """ONNX Runtime's providers, less TensorRT where its libraries do not load: onnxruntime-gpu lists
    TensorRT whether or not TensorRT is installed, and a session that then asks for it falls back
    to CUDA without the options given here (PROVIDER_OPTIONS)."""
    if listed is None:
        import onnxruntime

        listed = onnxruntime.get_available_providers()
    usable = list(listed)
    if PROVIDERS["tensorrt"] in usable:
        for name in TENSORRT_LIBRARIES:
            try:
                load(name)
                break
            except OSError:
                continue
        else:
            usable.remove(PROVIDERS["tensorrt"])
    return usable


def device_for(backend: str, device: str) -> str:
    """The device a backend runs on when `device` is asked for all backends: integer ones and int8 stay on the CPU."""
    return device if device == "auto" or device in PREFERENCE[backend] else "cpu"


def choose_providers(backend: str, device: str = "auto", available: list[str] | None = None) -> list[str]:
    """ONNX Runtime providers for a backend, best first, always ending with the CPU as fallback."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ValueError(f"unknown device '{device}': choose one of {', '.join(DEVICES)}")
    if available is None:
        available = usable_providers()
    if device == "auto":
        chosen = [PROVIDERS[d] for d in PREFERENCE[backend] if PROVIDERS[d] in available]
    else:
        if device not in PREFERENCE[backend]:
            raise ProviderError(
                f"backend '{backend}' cannot run on {device}: it runs on {', '.join(PREFERENCE[backend])} "
                "(ONNX Runtime's GPU providers have no integer convolution kernels; use backend 'qdq' on a GPU)"
            )
        if PROVIDERS[device] not in available:
            raise ProviderError(
                f"{PROVIDERS[device]} was requested but this onnxruntime offers only {', '.join(available)}: "
                "install onnxruntime-gpu with CUDA (and TensorRT) libraries, or use device 'auto' or 'cpu' "
                "(TensorRT counts only where its libnvinfer loads)"
            )
        chosen = [PROVIDERS[device]]
    return list(dict.fromkeys(chosen + [PROVIDERS["cpu"]]))


def logit_scale(model: IntegerModel, backend: str) -> float:
    """What a backend's logits are multiplied by to be float logits: the integer graph's are int32
    codes of the output step."""
    return model.nodes[-1].scale if backend in INTEGER_BACKENDS else 1.0


@dataclass
class Recognition:
    tokens: np.ndarray  # int64 [B, T'] argmax class per output frame
    lengths: np.ndarray  # int64 [B] valid output frames
    logits: np.ndarray | None = None  # [B, classes, T'], int32 for `integer`, float32 otherwise


class Recognizer:
    """One backend's ONNX Runtime session."""

    def __init__(
        self, model_dir: str | Path, backend: str, device: str = "auto", threads: int = 0, memory_arena: bool = True
    ):
        """model_dir: a folder written by `qasr quantize` (it holds every backend's graph).
        memory_arena=False: ONNX Runtime frees activations after each run instead of keeping an
        arena sized for the largest shape seen (flat memory for a server that sees many shapes)."""
        import onnxruntime

        providers = choose_providers(backend, device)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = memory_arena
        options.enable_mem_pattern = memory_arena
        self.backend = backend
        onnx_path = Path(model_dir) / BACKEND_FILES[backend]
        if not onnx_path.is_file():
            raise FileNotFoundError(
                f"{onnx_path}: no {backend} graph: quantize the checkpoint again with qasr quantize"
            )
        self.session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=[(p, PROVIDER_OPTIONS.get(p, {})) for p in providers]
        )
        self.provider = self.session.get_providers()[0]
        if self.provider != providers[0]:
            if device != "auto":
                raise ProviderError(
                    f"{providers[0]} could not start (ONNX Runtime fell back to {self.provider}): "
                    "are CUDA 13 and cuDNN 9 on the library path? ONNX Runtime's log above says why"
                )
            log.warning("%s could not start; %s runs on %s", providers[0], backend, self.provider)
        log.info("backend %s runs on %s (asked for %s)", backend, self.provider, ", ".join(providers))
        if backend == "int8":
            self._check_int8_weights()
        if backend == "integer-float":
            kernels = self.session.get_modelmeta().custom_metadata_map.get(FLOAT_KERNELS_PROP, "unrecorded")
            log.info("integer-float: %s (the rest on integer kernels)", kernels)

    def _check_int8_weights(self) -> None:
        stored = self.session.get_modelmeta().custom_metadata_map.get(INT8_WEIGHTS_PROP, "s8")
        suited = int8_weight_type()
        if stored != suited:
            log.warning(
                "int8.onnx has %s weights, but %s suits this CPU (quantizer.cpu.int8_weight_type): "
                "quantize the checkpoint again on this machine for exact int8 dot products or more speed",
                stored,
                suited,
            )

    def __call__(self, features: np.ndarray, lengths: np.ndarray, with_logits: bool = False) -> Recognition:
        """features float32 [B, F, T], lengths int64 [B] (frames) -> Recognition."""
        outputs = ["tokens", "out_lengths"] + (["logits"] if with_logits else [])
        values = self.session.run(
            outputs, {"features": np.ascontiguousarray(features, np.float32), "lengths": np.asarray(lengths, np.int64)}
        )
        return Recognition(*values)


def same_logits(recognizer: Recognizer, other: Recognizer, features_in: int, frames: int = 100, seed: int = 0) -> bool:
    """Whether two integer backends give the same logits bit for bit on a batch of random features
    [2, features_in, frames], one of them shorter (so the padding is checked too)."""
    features = np.random.default_rng(seed).standard_normal((2, features_in, frames)).astype(np.float32)
    lengths = np.array([frames, frames * 2 // 3])
    logits = recognizer(features, lengths, with_logits=True).logits
    expected = other(features, lengths, with_logits=True).logits
    return logits.shape == expected.shape and bool((logits == expected).all())
