"""Live transcription over a WebSocket (`/v1/listen`), in the shape of Deepgram's streaming API.

The client sends raw little-endian 16-bit PCM as binary messages and JSON control messages as
text ({"type": "KeepAlive"}, {"type": "CloseStream"}). The service answers with `Results`
messages, final ones as each stretch of audio is settled (cut at pauses, at most
QASR_LIVE_PIECE_SECONDS long) and, on request, interim ones for the audio after it, then a last
`Metadata` message, and closes the socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import soxr
from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.decoding import transcript
from app.formats import word_bodies
from app.transcriber import Engine, Piece, PieceStream, WindowPlanner, WindowResult, searched_piece

log = logging.getLogger("qasr.live")

ENCODINGS = ("linear16",)
SAMPLE_RATES = (8000, 48000)  # Hz, the range taken
MAX_CHANNELS = 8
BOOLEANS = {"true": True, "false": False}
INTENSIFIER = re.compile(r":-?\d+(\.\d+)?$")  # Deepgram's `keywords=word:2`; every hotword gets one boost here

# WebSocket close codes (RFC 6455)
NORMAL, UNSUPPORTED_DATA, POLICY_VIOLATION, INTERNAL_ERROR = 1000, 1003, 1008, 1011


class StreamError(Exception):
    """A stream that must end: its message for the client and the close code."""

    def __init__(self, message: str, code: int, kind: str):
        super().__init__(message)
        self.code, self.kind = code, kind


@dataclass(frozen=True)
class LiveOptions:
    sample_rate: int  # Hz of the client's audio
    channels: int  # interleaved in the client's audio; averaged to mono
    interim_results: bool


def last_value(params: QueryParams, name: str, default: str) -> str:
    values = params.getlist(name)
    return values[-1].strip() if values else default


def live_options(params: QueryParams) -> LiveOptions:
    """A handshake's query parameters -> the stream's options; ValueError naming a parameter it cannot take."""
    encoding = last_value(params, "encoding", "linear16").lower()
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r}: send raw 16-bit little-endian PCM (encoding=linear16)")
    rate, channels = last_value(params, "sample_rate", "16000"), last_value(params, "channels", "1")
    if not rate.isdigit() or not SAMPLE_RATES[0] <= int(rate) <= SAMPLE_RATES[1]:
        raise ValueError(f"sample_rate {rate!r}: a whole number of Hz from {SAMPLE_RATES[0]} to {SAMPLE_RATES[1]}")
    if not channels.isdigit() or not 1 <= int(channels) <= MAX_CHANNELS:
        raise ValueError(f"channels {channels!r}: 1 to {MAX_CHANNELS} (interleaved; they are averaged)")
    interim = BOOLEANS.get(last_value(params, "interim_results", "false").lower())
    if interim is None:
        raise ValueError("interim_results: 'true' or 'false'")
    language = last_value(params, "language", "en").lower()
    if language not in ("en", "en-us", "en-gb", "english"):
        raise ValueError(f"language {language!r}: this model transcribes English only ('en')")
    return LiveOptions(int(rate), int(channels), interim)


def hotword_fields(params: QueryParams) -> list[str]:
    """`hotwords` fields as they are, and Deepgram's `keywords`, each one word or phrase, its
    intensifier dropped, as hotword fields."""
    keywords = [INTENSIFIER.sub("", value).strip() for value in params.getlist("keywords")]
    return params.getlist("hotwords") + [f'"{keyword}"' for keyword in keywords if keyword]


class PcmToMono:
    """Raw little-endian 16-bit PCM with interleaved channels, in pieces of any size -> float32
    mono samples at `target_rate`, as they come (a sample split between pieces waits for its rest)."""

    def __init__(self, rate: int, channels: int, target_rate: int):
        self.channels, self.pending = channels, b""
        self.resampler = None if rate == target_rate else soxr.ResampleStream(rate, target_rate, 1, quality="HQ")

    def push(self, data: bytes, last: bool = False) -> np.ndarray:
        """The samples `data` completes; last: the stream ends here (the resampler's rest)."""
        data = self.pending + data
        whole = len(data) // (2 * self.channels) * 2 * self.channels
        self.pending = data[whole:]
        pcm = np.frombuffer(data[:whole], "<i2").reshape(-1, self.channels)
        mono = pcm.astype(np.float32).mean(axis=1) / 32768  # the scale soundfile reads 16-bit files at
        if self.resampler is not None:
            mono = self.resampler.resample_chunk(mono, last=last)
        return mono.astype(np.float32)


@dataclass(frozen=True)
class LiveWindows:
    """How a live stream is recognised, in seconds: `step` at a time, each window seeing `context`
    before it and `lookahead` after, and searched in pieces of at most `piece`, each ending at the
    first pause at least `pause_probability` sure (None: where a file's piece would end)."""

    step: float
    context: float
    lookahead: float
    piece: float
    pause_probability: float | None = None  # a piece ends at the first pause this sure (PieceStream)


class LiveTranscriber:
    """One live stream's mono audio, as it arrives -> windows recognised once their samples are in
    (WindowPlanner) -> final pieces (PieceStream, cut at settled pauses), and interim words of the
    frames after them."""

    def __init__(
        self,
        engine: Engine,
        recognise: Callable[[list[np.ndarray]], Awaitable[list[WindowResult]]],
        windows: LiveWindows,
        hotwords: tuple[str, ...] = (),
    ):
        """recognise: windows' samples -> their results, as Batcher.recognise."""
        rate = engine.sample_rate
        self.engine, self.recognise, self.hotwords = engine, recognise, hotwords
        left, keep, right = (round(seconds * rate) for seconds in (windows.context, windows.step, windows.lookahead))
        self.planner = WindowPlanner(left, keep, right, engine.frame_samples)
        longest = round(windows.piece * rate / engine.frame_samples)
        self.pieces = PieceStream(engine, hotwords, longest, windows.pause_probability)
        self.frame_seconds = engine.frame_samples / rate
        self.audio = np.zeros(0, np.float32)  # the samples from audio_start on
        self.audio_start = 0
        self.received = 0  # samples so far

    @property
    def seconds(self) -> float:
        """Audio received so far."""
        return self.received / self.engine.sample_rate

    async def add(self, samples: np.ndarray) -> bool:
        """More audio: recognise the windows it completes and search the pieces they settle.
        Whether any window was recognised."""
        self.audio = np.concatenate([self.audio, samples])
        self.received += len(samples)
        return await self._recognise(self.planner.ready(self.received))

    async def end(self) -> None:
        """No more audio: recognise the rest and search it. Under 100 ms in all gives no words."""
        if self.received >= self.engine.sample_rate // 10:
            await self._recognise(self.planner.rest(self.received))
        self.pieces.finish()

    async def interim(self) -> Piece | None:
        """The words of the frames recognised but not yet in a final piece, searched as they stand."""
        tail, first = self.pieces.tail, self.pieces.tail_start
        if not len(tail):
            return None
        return await asyncio.to_thread(searched_piece, self.engine, tail, first, self.hotwords)

    async def _recognise(self, windows: list) -> bool:
        if not windows:
            return False
        offset = self.audio_start
        results = await self.recognise([self.audio[w.start - offset : w.stop - offset] for w in windows])
        for window, result in zip(windows, results, strict=True):
            self.pieces.add(window, result)
        self.audio, self.audio_start = self.audio[self.planner.start - offset :], self.planner.start
        return True


def results_message(piece: Piece, frame_seconds: float, is_final: bool, request_id: str, model: str) -> dict:
    """Deepgram's `Results` for a piece: its span, transcript and timed words."""
    words = [{**body, "punctuated_word": body["word"]} for body in word_bodies(piece.words)]
    confidence = float(np.mean([w.confidence for w in piece.words])) if piece.words else 0.0
    alternative = {"transcript": transcript(piece.words), "confidence": confidence, "words": words}
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "start": round(piece.first_frame * frame_seconds, 3),
        "duration": round(piece.frames * frame_seconds, 3),
        "is_final": is_final,
        "speech_final": is_final,  # final pieces end at pauses (or the stream's end)
        "channel": {"alternatives": [alternative]},
        "metadata": {"request_id": request_id, "model_info": {"name": model}},
    }


def control_type(text: str) -> str:
    """A text message's `type`; StreamError for anything but a JSON object of a known type."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        message = None
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in ("KeepAlive", "CloseStream"):
        raise StreamError(
            'text messages must be JSON: {"type": "KeepAlive"} or {"type": "CloseStream"}; audio goes in binary ones',
            UNSUPPORTED_DATA,
            "invalid_message",
        )
    return kind


@dataclass
class LiveLimits:
    idle_seconds: float  # close a stream that sends nothing this long
    max_audio_seconds: float  # close a stream longer than this


async def serve(
    websocket: WebSocket,
    transcriber: LiveTranscriber,
    options: LiveOptions,
    limits: LiveLimits,
    request_id: str,
    model: str,
    on_final: Callable[[float], None] = lambda lag_s: None,
) -> None:
    """Run an accepted stream to its end: CloseStream (the rest is transcribed, then `Metadata`),
    the client gone, or a StreamError (an `Error` message, then the close). on_final(lag_s): each
    final piece's lag, the audio received when it was sent minus the piece's end, in seconds."""
    pcm = PcmToMono(options.sample_rate, options.channels, transcriber.engine.sample_rate)
    created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    async def send_final(piece: Piece) -> None:
        on_final(transcriber.seconds - (piece.first_frame + piece.frames) * transcriber.frame_seconds)
        await websocket.send_json(results_message(piece, transcriber.frame_seconds, True, request_id, model))

    async def add(samples: np.ndarray) -> bool:
        if transcriber.received + len(samples) > limits.max_audio_seconds * transcriber.engine.sample_rate:
            raise StreamError(
                f"the stream passed the limit of {limits.max_audio_seconds:g} s of audio", POLICY_VIOLATION, "too_long"
            )
        return await transcriber.add(samples)

    try:
        while True:
            try:
                message = await asyncio.wait_for(websocket.receive(), limits.idle_seconds)
            except TimeoutError:
                raise StreamError(
                    f"no audio or KeepAlive for {limits.idle_seconds:g} s", POLICY_VIOLATION, "idle"
                ) from None
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                recognised = await add(pcm.push(message["bytes"]))
            elif control_type(message.get("text") or "") == "CloseStream":
                break
            else:
                recognised = False  # KeepAlive
            wanted = recognised and options.interim_results  # an interim result follows the finals before it
            while transcriber.pieces.ready() or (wanted and transcriber.pieces.searches):
                await send_final(await transcriber.pieces.next_piece())
            if wanted:
                if (piece := await transcriber.interim()) is not None:
                    await websocket.send_json(
                        results_message(piece, transcriber.frame_seconds, False, request_id, model)
                    )
        await add(pcm.push(b"", last=True))
        await transcriber.end()
        while (piece := await transcriber.pieces.next_piece()) is not None:
            await send_final(piece)
        await websocket.send_json(
            {
                "type": "Metadata",
                "request_id": request_id,
                "created": created,
                "duration": round(transcriber.seconds, 3),
                "channels": options.channels,
                "models": [model],
            }
        )
        await websocket.close(NORMAL)
    except StreamError as error:
        await close_with_error(websocket, str(error), error.kind, error.code)
    except WebSocketDisconnect:
        return
    except Exception:
        log.exception("live stream %s failed", request_id)
        await close_with_error(websocket, "internal error; quote the request id when reporting it", "server_error")
    finally:
        transcriber.pieces.abandon()


async def close_with_error(websocket: WebSocket, message: str, kind: str, code: int = INTERNAL_ERROR) -> None:
    """Deepgram's `Error` message, then the close; nothing if the client has already gone."""
    try:
        await websocket.send_json({"type": "Error", "description": message, "variant": kind})
        await websocket.close(code, reason=message[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass  # the socket is already closed
    log.info("live stream closed (%s): %s", code, message)
