"""Zero-shot, integer-only quantization of NeMo convolutional CTC models (Q-ASR)."""

__version__ = "0.1.0"
