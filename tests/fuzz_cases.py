"""Malformed and hostile uploads for every endpoint that takes audio, each with the answer it must get.

`cases(limit_bytes)` yields over 200 requests: broken containers, lying headers, bad samples,
odd but valid audio, wrong content types and broken forms. A case expects either one exact 4xx
status or 200 (valid audio, which must be transcribed).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import soundfile

RATE = 16000
ENDPOINTS = ("/v1/transcribe", "/v1/audio/transcriptions")


@dataclass
class Case:
    name: str
    endpoint: str
    expect: int  # HTTP status
    body: bytes = b""
    content_type: str | None = None  # raw bodies; None: multipart
    filename: str = "audio.wav"
    fields: dict = field(default_factory=lambda: {"model": "whisper-1"})
    raw_form: bytes | None = None  # a hand-made multipart body (with content_type)


def tone(seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    mono = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.01 * rng.standard_normal(len(t))
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32) if channels > 1 else mono.astype(np.float32)


def encode(samples: np.ndarray, rate: int = RATE, format: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def wav_header(rate: int, channels: int, bits: int, data_bytes: int, format_tag: int = 1) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", data_bytes))
    )


def bodies(limit_bytes: int) -> Iterator[tuple[str, bytes, int]]:
    """(name, file bytes, expected status) for the file itself, whatever the endpoint."""
    good = encode(tone(1.0))
    flac = encode(tone(1.0), format="FLAC")
    yield "empty", b"", 400
    for seed in range(20):
        rng = np.random.default_rng(seed)
        yield f"random bytes {seed}", rng.bytes(int(rng.integers(1, 5000))), 415
    for cut in (4, 8, 12, 16, 20, 24, 36, 40):
        yield f"WAV header cut at {cut}", good[:cut], 415
    for cut in (43, 44):  # libsndfile opens these: a header with no samples
        yield f"WAV header cut at {cut}", good[:cut], 400
    for cut in (4, 20, 41):
        yield f"FLAC cut at {cut}", flac[:cut], 415
    for cut in (42, 100, 500):  # stream info complete, frames missing
        yield f"FLAC cut at {cut}", flac[:cut], 400
    samples = (tone(1.0) * 32767).astype("<i2").tobytes()
    yield "WAV claims 0 channels", wav_header(RATE, 0, 16, len(samples)) + samples, 415
    yield "WAV claims 0 Hz", wav_header(0, 1, 16, len(samples)) + samples, 415
    yield "WAV claims 7-bit samples", wav_header(RATE, 1, 7, len(samples)) + samples, 200  # read as 8-bit
    yield "WAV claims format 99", wav_header(RATE, 1, 16, len(samples), format_tag=99) + samples, 415
    yield "WAV claims 1 h of data", wav_header(RATE, 1, 16, 2 * RATE * 3600) + samples, 200
    yield "WAV claims 4 GB", wav_header(RATE, 1, 16, 0xFFFFFFF0) + samples, 200
    yield "WAV claims 8 channels, has 1", wav_header(RATE, 8, 16, len(samples)) + samples, 200
    for value in ("nan", "inf", "-inf"):
        bad = tone(1.0)
        bad[::97] = float(value)
        yield f"float WAV with {value}", encode(bad, subtype="FLOAT"), 400
        yield f"double WAV with {value}", encode(bad, subtype="DOUBLE"), 400
    yield "0 samples", encode(np.zeros(0, np.float32)), 400
    yield "1 sample", encode(np.array([0.5], np.float32)), 400
    yield "99 ms", encode(tone(0.099)), 400
    yield "digital silence", encode(np.zeros(RATE, np.float32)), 400
    yield "silence in 8 channels", encode(np.zeros((RATE, 8), np.float32)), 400
    for rate in (8000, 11025, 22050, 44100, 48000, 96000):
        yield f"{rate} Hz", encode(tone(1.0, rate), rate), 200
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"):
        yield f"WAV {subtype}", encode(tone(1.0), subtype=subtype), 200
    yield "8 channels", encode(tone(1.0, channels=8)), 200
    yield "2 channels 44.1 kHz", encode(tone(1.0, 44100, channels=2), 44100), 200
    yield "FLAC 24-bit", encode(tone(1.0), format="FLAC", subtype="PCM_24"), 200
    yield "OGG Vorbis", encode(tone(1.0), format="OGG", subtype="VORBIS"), 200
    yield "OGG Opus", encode(tone(1.0, 48000), 48000, format="OGG", subtype="OPUS"), 200
    yield "MP3", encode(tone(1.0, 44100), 44100, format="MP3", subtype="MPEG_LAYER_III"), 200
    yield "AIFF", encode(tone(1.0), format="AIFF"), 200
    yield "M4A", b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00" + bytes(500), 415
    yield "WebM", b"\x1aE\xdf\xa3" + bytes(500), 415
    yield "text", b"hello, this is not audio at all\n" * 20, 415
    yield "JSON", b'{"audio": "AAAA"}', 415
    yield "PNG", b"\x89PNG\r\n\x1a\n" + bytes(200), 415
    yield "over the size limit", b"RIFF" + bytes(limit_bytes), 413
    long_u8 = encode(np.full(8000 * 70, 0.1, np.float32), 8000, subtype="PCM_U8")  # 70 s, 560 kB; limit is 60 s
    yield "longer than the duration limit", long_u8, 413


def cases(limit_bytes: int) -> list[Case]:
    result = []
    for name, body, status in bodies(limit_bytes):
        result.append(Case(f"raw: {name}", ENDPOINTS[0], status, body, "application/octet-stream"))
        for endpoint in ENDPOINTS:
            result.append(Case(f"form: {name}", endpoint, status, body))
    good = encode(tone(1.0))
    for endpoint in ENDPOINTS:
        result += [
            Case("file as a text field", endpoint, 400, raw_form=form({}, {"file": "not a file", "model": "x"})),
            Case("file under another name", endpoint, 400, raw_form=form({"audio": ("a.wav", good)})),
            Case("two files", endpoint, 400, raw_form=form({"file": ("a.wav", good), "file2": ("b.wav", good)})),
            Case("huge form field", endpoint, 400, good, fields={"model": "m" * 200_000}),
            Case("broken multipart", endpoint, 400, raw_form=b'--xyz\r\nContent-Disposition: form-data; name="fi'),
            Case("boundary never closed", endpoint, 400, raw_form=form({"file": ("a.wav", good)})[:-20]),
            Case("wrong filename extension", endpoint, 200, good, filename="audio.mp3"),
            Case("path as filename", endpoint, 200, good, filename="../../etc/passwd"),
        ]
    result += [
        Case("OpenAI endpoint, raw body", ENDPOINTS[1], 415, good, "audio/wav"),
        Case("OpenAI endpoint, JSON body", ENDPOINTS[1], 415, b'{"file": "x"}', "application/json"),
        Case("native, text content type", ENDPOINTS[0], 200, good, "text/plain"),
        Case("OpenAI, bad response_format", ENDPOINTS[1], 400, good, fields={"response_format": "pdf"}),
        Case("OpenAI, language de", ENDPOINTS[1], 400, good, fields={"language": "de"}),
        Case("OpenAI, bad granularity", ENDPOINTS[1], 400, good, fields={"timestamp_granularities[]": "x"}),
    ]
    return result


def form(files: dict[str, tuple[str, bytes]], fields: dict[str, str] | None = None, boundary: str = "xyz") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (fields or {}).items()
    ]
    parts += [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, (filename, data) in files.items()
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def send(client, case: Case):
    """Post one case with an httpx-style client (TestClient or httpx.Client)."""
    if case.raw_form is not None:
        return client.post(
            case.endpoint, content=case.raw_form, headers={"content-type": "multipart/form-data; boundary=xyz"}
        )
    if case.content_type is not None:
        return client.post(case.endpoint, content=case.body, headers={"content-type": case.content_type})
    files = {"file": (case.filename, case.body, "application/octet-stream")}
    return client.post(case.endpoint, data=case.fields, files=files)
