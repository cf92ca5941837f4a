"""Service settings: one class, read from `QASR_*` environment variables (see the README's table)."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.hotwords import hotword_list
from app.shapes import PAD_SHAPES
from quantizer.checkpoint import file_sha256
from quantizer.lexicon import DECODERS, SHIPPED_LANGUAGE_MODEL, LexiconSettings
from quantizer.lexicon_workers import worker_count
from quantizer.runtime import BACKENDS, DEVICES
from quantizer.synthetic import SyntheticSettings

REPOSITORY = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPOSITORY / "models" / "qasr-en-quartznet5x5.nemo"
SHIPPED_MODEL_SHA256 = "8d9bf5cfd4cf2776291a7a6639b0b23c1ce75426836ef0d5e6eb987083198330"
SHIPPED_MODEL_BYTES = 6_307_840  # compared first, so that no other checkpoint is read to be told apart
SERVICE_DECODERS = ("auto", *DECODERS)


@functools.cache
def is_shipped_model(path: Path) -> bool:
    """Whether a checkpoint is the shipped model, by content: the container image serves a copy."""
    if not path.is_file() or path.stat().st_size != SHIPPED_MODEL_BYTES:
        return False
    return file_sha256(path) == SHIPPED_MODEL_SHA256


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QASR_", protected_namespaces=())

    model_path: Path = Field(SHIPPED_MODEL, description=".nemo checkpoint to serve")
    model_name: str = Field("qasr-en-quartznet5x5", description="id reported by /v1/models")
    cache_dir: Path = Field(Path.home() / ".cache" / "qasr", description="quantized models, keyed by checkpoint")
    backend: str = Field("integer-float", description=f"one of {', '.join(BACKENDS)}")
    device: str = Field("auto", description=f"one of {', '.join(DEVICES)}")
    threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads (0: all cores)")
    decoder: str = Field(
        "auto",
        description="auto (lexicon for the shipped model, greedy for others), greedy, or lexicon: beam search "
        "over English words scored by a language model",
    )
    language_model: str = Field(
        str(SHIPPED_LANGUAGE_MODEL), description="lexicon decoder: ARPA n-gram file; empty: wordfreq unigrams"
    )
    lm_weight: float = Field(LexiconSettings().lm_weight, ge=0, description="lexicon decoder: weight of ln P(word)")
    word_score: float = Field(LexiconSettings().word_score, description="lexicon decoder: added per word")
    beam: int = Field(LexiconSettings().beam, ge=1, le=1000, description="lexicon decoder: hypotheses kept per frame")
    vocabulary: str = Field("", description="lexicon decoder: text file of words to add to the lexicon, one per line")
    hotword_boost: float = Field(
        LexiconSettings().hotword_boost, ge=0, description="lexicon decoder: ln of how much likelier a hotword is made"
    )
    hotwords: str = Field(
        "",
        description='lexicon decoder: words every request favours, separated by commas or spaces; "words in quotes" '
        "make a phrase",
    )
    search_workers: int = Field(
        0, ge=0, description="lexicon decoder: processes running searches side by side (0: one per core)"
    )

    # Zero-shot calibration of the startup job (see `qasr quantize --help`).
    calib_samples: int = Field(8, ge=1)
    calib_frames: int = Field(300, ge=32)
    calib_iters: int = Field(100, ge=0)
    calib_seed: int = 0

    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="413 beyond this, enforced while reading")
    max_audio_seconds: float = Field(3600.0, gt=0, description="413 beyond this duration")
    chunk_seconds: float = Field(20.0, ge=4.0, description="long audio is recognised in windows of this length")
    chunk_overlap_seconds: float = Field(2.0, ge=0.0, description="context kept on each side of a window")
    max_batch_size: int = Field(8, ge=1, description="windows recognised together")
    pad_shapes: str = Field("auto", description="pad batches to a few shapes: auto (GPU providers only), on, off")
    max_batch_wait_ms: float = Field(5.0, ge=0.0, description="how long a batch waits to fill")
    request_timeout_s: float = Field(300.0, gt=0, description="504 after this")

    # Live streams (/v1/listen): short windows and pieces, for words within seconds.
    live_step_seconds: float = Field(1.0, ge=0.1, description="live audio is recognised this much at a time")
    live_context_seconds: float = Field(2.0, ge=0.0, description="audio a live window sees before what it recognises")
    live_lookahead_seconds: float = Field(
        1.0, ge=0.0, description="audio a live window waits for after what it recognises (adds to the latency)"
    )
    live_piece_seconds: float = Field(
        8.0, ge=1.0, description="lexicon decoder: the longest stretch of live audio searched at once"
    )
    live_pause_probability: float = Field(
        0.99,
        ge=0.0,
        le=1.0,
        description="lexicon decoder: a live piece ends at the first pause this sure (0: where a file's would)",
    )
    live_idle_seconds: float = Field(10.0, gt=0, description="a live stream sending nothing this long is closed")
    live_max_streams: int = Field(32, ge=1, description="live streams open at once; more are refused (503)")

    api_key: str | None = Field(None, description="if set, transcription endpoints need `Authorization: Bearer KEY`")
    metrics_need_key: bool = Field(False, description="also protect /metrics with the API key")
    cors_origins: list[str] = Field(default_factory=list, description="CORS allowed origins; empty: CORS off")

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"

    @field_validator("api_key")
    @classmethod
    def _empty_key_is_no_key(cls, key: str | None) -> str | None:
        return key or None

    def check(self) -> None:
        """Reject impossible combinations with a message naming the variable."""
        if self.backend not in BACKENDS:
            raise ValueError(f"QASR_BACKEND={self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.decoder not in SERVICE_DECODERS:
            raise ValueError(f"QASR_DECODER={self.decoder!r}: choose one of {', '.join(SERVICE_DECODERS)}")
        if self.device not in DEVICES:
            raise ValueError(f"QASR_DEVICE={self.device!r}: choose one of {', '.join(DEVICES)}")
        if self.pad_shapes not in PAD_SHAPES:
            raise ValueError(f"QASR_PAD_SHAPES={self.pad_shapes!r}: choose one of {', '.join(PAD_SHAPES)}")
        if self.decoding() == "lexicon" and self.language_model and not Path(self.language_model).is_file():
            raise ValueError(f"QASR_LANGUAGE_MODEL={self.language_model!r}: no such file (empty: wordfreq unigrams)")
        if self.decoding() == "lexicon" and self.vocabulary and not Path(self.vocabulary).is_file():
            raise ValueError(f"QASR_VOCABULARY={self.vocabulary!r}: no such file")
        try:
            hotwords = hotword_list([self.hotwords])
        except ValueError as error:
            raise ValueError(f"QASR_HOTWORDS: {error}") from None
        if self.decoding() == "greedy" and hotwords:
            raise ValueError("QASR_HOTWORDS needs the lexicon decoder (QASR_DECODER=lexicon)")
        if self.chunk_overlap_seconds * 2 >= self.chunk_seconds:
            raise ValueError("QASR_CHUNK_OVERLAP_SECONDS must be less than half of QASR_CHUNK_SECONDS")

    def decoding(self) -> str:
        """The decoder in use. `auto` is the lexicon search for the shipped model, the one its language
        model and search settings were measured with, and greedy for any other checkpoint, whose
        labels and vocabulary the shipped English lexicon may not fit."""
        if self.decoder != "auto":
            return self.decoder
        return "lexicon" if is_shipped_model(self.model_path.resolve()) else "greedy"

    def language_model_name(self) -> str | None:
        """What scores the lexicon decoder's words: the ARPA file's name, or wordfreq; None when greedy."""
        if self.decoding() != "lexicon":
            return None
        return Path(self.language_model).name if self.language_model else "wordfreq unigrams"

    def search_worker_count(self) -> int | None:
        """Worker processes for lexicon searches (QASR_SEARCH_WORKERS, 0 resolved to the cores this
        process may run on); None when decoding greedily."""
        if self.decoding() != "lexicon":
            return None
        return worker_count(self.search_workers)

    def calibration(self) -> SyntheticSettings:
        """The startup job's zero-shot calibration (QASR_CALIB_*)."""
        return SyntheticSettings(
            samples=self.calib_samples,
            frames=self.calib_frames,
            min_frames=min(SyntheticSettings().min_frames, self.calib_frames),
            iters=self.calib_iters,
            seed=self.calib_seed,
        )

    def lexicon(self) -> LexiconSettings | None:
        """The lexicon decoder's settings, or None for greedy decoding."""
        if self.decoding() != "lexicon":
            return None
        return LexiconSettings(
            lm_weight=self.lm_weight,
            word_score=self.word_score,
            beam=self.beam,
            language_model=self.language_model,
            vocabulary=self.vocabulary,
            hotword_boost=self.hotword_boost,
            hotwords=hotword_list([self.hotwords]),
        )
