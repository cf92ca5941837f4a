"""qasr's HTTP service: integer-only speech recognition behind native and OpenAI-compatible endpoints."""
