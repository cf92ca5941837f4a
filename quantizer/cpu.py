"""What the CPU's integer dot products do, for choosing the int8 graph's weight type."""

from __future__ import annotations

from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni")  # u8 x s8 products summed straight into int32
INT8_WEIGHT_TYPES = ("s8", "u8")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's x86 `flags` (empty off Linux or off x86)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def int8_weight_type(flags: frozenset[str] | None = None) -> str:
    """`u8` on x86 without VNNI, `s8` elsewhere.

    Without VNNI, ONNX Runtime's u8 x s8 convolution kernels add pairs of products in saturating
    int16 (SSE/AVX2 `pmaddubsw`: 2 x 255 x 127 does not fit), so large activations meeting large
    weights are clipped; its u8 x u8 kernels widen to int16 first and sum in int32. Weights stored
    as u8 (code + 128, zero point 128) therefore avoid the saturation there, at some speed. With
    VNNI (or on ARM) u8 x s8 is exact and the fastest path.
    """
    flags = cpu_flags() if flags is None else flags
    is_x86 = "sse2" in flags
    return "u8" if is_x86 and not any(f in flags for f in VNNI_FLAGS) else "s8"
