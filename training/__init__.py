"""Training recipe for the shipped English model (NeMo QuartzNet architecture, plain PyTorch loop)."""
