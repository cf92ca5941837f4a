"""Audio files -> words on this machine, through the service's own pipeline (`qasr transcribe`):
the same quantization cache, backend, windows, batches and decoder as `qasr serve`, with no server."""

from __future__ import annotations

from dataclasses import dataclass

from app.audio import decode_audio
from app.decoding import Word
from app.model_store import prepare_model
from app.settings import Settings
from app.transcriber import Engine, decode


@dataclass
class FileTranscript:
    words: list[Word]
    duration: float  # seconds of audio


class OfflineTranscriber:
    """The settings' model, quantized (or taken from the cache) and opened once; searches run in this process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        prepared = prepare_model(settings.model_path, settings.cache_dir, settings.calibration())
        self.engine = Engine.from_settings(prepared.folder, settings, search_workers=None)

    def transcribe(self, data: bytes, hotwords: tuple[str, ...] = ()) -> FileTranscript:
        """An audio file's bytes -> its words; AudioError for what cannot be read (as the service's 4xx)."""
        s = self.settings
        audio = decode_audio(data, self.engine.sample_rate, s.max_audio_seconds)
        windows, samples = self.engine.windows_of(audio.samples, s.chunk_seconds, s.chunk_overlap_seconds)
        results = []
        for first in range(0, len(samples), s.max_batch_size):
            results += self.engine.run(samples[first : first + s.max_batch_size])
        words, _ = decode(self.engine, windows, results, hotwords)
        return FileTranscript(words, audio.seconds)

    def close(self) -> None:
        self.engine.close()
