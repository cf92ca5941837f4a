"""The FastAPI application: startup job, transcription endpoints, health and metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from app import formats, live
from app.audio import AudioError, decode_audio
from app.batcher import Batcher
from app.decoding import Word, transcript
from app.limits import BodyLimit
from app.metrics import Metrics
from app.model_store import PreparedModel, prepare_model
from app.settings import Settings
from app.transcriber import (
    Engine,
    PieceStream,
    Timings,
    Window,
    WindowResult,
    batch_timings,
    decode,
    head_windows,
)
from quantizer.lexicon import UnknownWords

log = logging.getLogger("qasr.api")

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
STREAMED_FORMATS = ("json", "text")  # OpenAI streams text deltas; timed formats need the whole result
BOOLEANS = {"true": True, "false": False}
INTERNAL_ERROR = "internal error while transcribing; quote the request id when reporting it"
LANGUAGES = ("en", "english")


_FILE = {"type": "string", "format": "binary", "description": "audio: WAV, FLAC, OGG/Opus, MP3, M4A, WebM, ..."}
_STREAM = {"type": "boolean", "description": "server-sent events: each piece's timed words, then the whole answer"}
_HOTWORDS = {
    "type": "string",
    "description": 'lexicon words the search favours, separated by commas or spaces; "words in quotes" make a phrase',
}
NATIVE_BODY = {
    "parameters": [
        {"name": "stream", "in": "query", "required": False, "schema": _STREAM},
        {"name": "hotwords", "in": "query", "required": False, "schema": _HOTWORDS},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": _FILE, "stream": _STREAM, "hotwords": _HOTWORDS},
                }
            },
            "application/octet-stream": {"schema": _FILE},
        },
    },
}
OPENAI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "model"],
                    "properties": {
                        "file": _FILE,
                        "model": {"type": "string"},
                        "language": {"type": "string"},
                        "prompt": {"type": "string"},
                        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
                        "temperature": {"type": "number"},
                        "stream": {"type": "boolean", "description": "server-sent events: text deltas, then the text"},
                        "timestamp_granularities[]": {
                            "type": "array",
                            "items": {"type": "string", "enum": ["word", "segment"]},
                        },
                    },
                }
            }
        },
    }
}


def stream_wanted(values: list[str]) -> bool:
    """A `stream` field's values (the last counts; none: false) -> whether to answer with events."""
    stream = BOOLEANS.get(values[-1].strip().lower() if values else "false")
    if stream is None:
        raise ApiError(400, "stream: 'true' or 'false'")
    return stream


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    engine: Engine | None = None
    prepared: PreparedModel | None = None
    batcher: Batcher | None = None
    phase: str = "starting"  # starting -> ready -> draining | failed
    live_streams: int = 0  # open on /v1/listen
    error: str | None = None


@dataclass
class Upload:
    """An upload's audio, cut into the model's windows."""

    windows: list[Window]
    samples: list[np.ndarray]  # float32 [window samples] for each window
    duration: float  # seconds of audio
    decode_s: float  # seconds spent reading the audio
    start: float  # time.perf_counter() when the request's work began


@dataclass
class Transcription:
    words: list[Word]
    duration: float  # seconds of audio
    timings: Timings
    decode_s: float
    total_s: float


def load_model(state: ServiceState) -> None:
    """The startup job: quantize (or reuse the cache), open the session, warm up."""
    s = state.settings
    state.prepared = prepare_model(s.model_path, s.cache_dir, s.calibration())
    log.info("opening the %s session", s.backend)
    workers = s.search_worker_count()
    state.engine = Engine.from_settings(state.prepared.folder, s, workers)
    if state.engine.buckets is not None:
        log.info("%d input shapes warmed up in %.1f s", len(state.engine.buckets.shapes()), state.engine.warmup_s)
    state.metrics.record_report(state.prepared.report, state.prepared.quantize_seconds)
    if workers:
        state.metrics.track_search_workers(workers, lambda: state.engine.lexicon.busy)
    state.phase = "ready"
    state.metrics.ready.set(1)
    searches = f", lexicon searches in {workers} worker processes" if workers else ""
    log.info("ready: %s on %s%s", state.engine.backend, state.engine.recognizer.provider, searches)


def create_app(settings: Settings | None = None, exit_on_failure: bool = True) -> FastAPI:
    """exit_on_failure: a failed startup job ends the process (non-zero) instead of leaving it unready."""
    settings = settings or Settings()
    settings.check()
    state = ServiceState(settings)

    def startup_job() -> None:
        try:
            load_model(state)
        except Exception as error:
            state.phase, state.error = "failed", f"{type(error).__name__}: {error}"
            log.critical("startup failed: %s", state.error)
            if exit_on_failure:
                logging.shutdown()
                os._exit(3)

    def run_batch(windows: list[np.ndarray], batch_id: int):
        return state.engine.run(windows, batch_id)

    def on_batch(size: int, queued: int) -> None:
        state.metrics.batch_size.observe(size)
        state.metrics.queue_depth.set(queued)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher = Batcher(run_batch, settings.max_batch_size, settings.max_batch_wait_ms / 1000, on_batch)
        state.batcher.start()
        threading.Thread(target=startup_job, name="qasr-startup", daemon=True).start()
        yield
        state.phase = "draining"
        await state.batcher.stop()
        if state.engine is not None:
            state.engine.close()

    app = FastAPI(
        title="qasr",
        version="0.1.0",
        lifespan=lifespan,
        description="Integer-only INT8 speech recognition (Q-ASR), OpenAI-compatible.",
    )
    app.state.service = state
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)

    @app.middleware("http")
    async def request_id_and_metrics(request: Request, call_next):
        request.state.request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        route = request.scope.get("route")
        state.metrics.requests.labels(endpoint=getattr(route, "path", "unmatched"), status=response.status_code).inc()
        return response

    def error_body(request: Request | WebSocket, status: int, message: str, kind: str) -> dict:
        return {
            "error": {
                "message": message,
                "type": kind,
                "code": status,
                "request_id": getattr(request.state, "request_id", None),
            }
        }

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse(
            error_body(request, error.status, error.message, error.kind), error.status, headers=error.headers
        )

    @app.exception_handler(AudioError)
    async def audio_error(request: Request, error: AudioError):
        return JSONResponse(error_body(request, error.status, str(error), "invalid_audio"), error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return JSONResponse(
            error_body(request, error.status_code, str(error.detail), "http_error"),
            error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        log.exception("request %s failed", getattr(request.state, "request_id", "?"))
        return JSONResponse(error_body(request, 500, INTERNAL_ERROR, "server_error"), 500)

    def is_key(token: str) -> bool:
        return secrets.compare_digest(token.strip().encode(), settings.api_key.encode())

    def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not is_key(token):
            raise ApiError(
                401,
                "missing or wrong API key: send `Authorization: Bearer <key>`",
                "authentication_error",
                {"WWW-Authenticate": "Bearer"},
            )

    def authorize_socket(websocket: WebSocket) -> str | None:
        """A WebSocket handshake's API key: `Authorization: Bearer KEY` (or Deepgram's `Token KEY`),
        or from browsers, which cannot set headers, the subprotocols `token, KEY`. The subprotocol
        to accept with."""
        if settings.api_key is None:
            return None
        scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("bearer", "token") and is_key(token):
            return None
        protocols = websocket.scope.get("subprotocols", [])
        if len(protocols) == 2 and protocols[0].lower() == "token" and is_key(protocols[1]):
            return protocols[0]
        raise ApiError(
            401,
            "missing or wrong API key: send `Authorization: Bearer <key>`, or the subprotocols `token, <key>`",
            "authentication_error",
            {"WWW-Authenticate": "Bearer"},
        )

    def serving_backend() -> str:
        """The backend answering requests: the one asked for, unless the engine fell back (Engine)."""
        return state.engine.backend if state.engine is not None else settings.backend

    def require_ready() -> None:
        if state.phase != "ready":
            raise ApiError(503, f"the model is not ready ({state.phase})", "unavailable", {"Retry-After": "5"})

    async def within(deadline: float, awaitable):
        """`awaitable`'s result, or 504 once time.monotonic() passes `deadline`."""
        try:
            return await asyncio.wait_for(awaitable, max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise ApiError(504, f"transcription took longer than {settings.request_timeout_s:g} s", "timeout") from None

    def requested_hotwords(fields: list[str]) -> tuple[str, ...]:
        """`hotwords` fields -> the words the search is to favour, QASR_HOTWORDS first; 400 for words
        it cannot take."""
        require_ready()
        try:
            return state.engine.hotwords(fields)
        except UnknownWords as error:
            raise ApiError(400, f"hotwords {error} (QASR_VOCABULARY adds words to it)") from None
        except ValueError as error:
            raise ApiError(400, str(error)) from None

    def prompt_hotwords(prompt: str) -> tuple[str, ...]:
        """QASR_HOTWORDS and an OpenAI `prompt`'s rarer lexicon words and names (HotwordLexicon.from_prompt);
        none when greedy."""
        lexicon = state.engine.hotword_lexicon if state.engine is not None else None
        return lexicon.from_prompt(prompt) if lexicon is not None else ()

    async def transcribe(data: bytes, hotwords: tuple[str, ...] = ()) -> Transcription:
        """Decode, recognise and decode CTC, all within the request timeout (504 past it)."""
        require_ready()
        deadline = time.monotonic() + settings.request_timeout_s
        upload = await within(deadline, read_upload(data))
        state.metrics.queue_depth.set(state.batcher.queued + len(upload.windows))
        results = await within(deadline, state.batcher.recognise(upload.samples))
        search = asyncio.to_thread(decode, state.engine, upload.windows, results, hotwords)
        words, timings = await within(deadline, search)
        total_s = time.perf_counter() - upload.start
        observe(upload, timings, total_s)
        return Transcription(words, upload.duration, timings, upload.decode_s, total_s)

    async def words_as_found(
        upload: Upload, deadline: float, timings: Timings, hotwords: tuple[str, ...]
    ) -> AsyncIterator[list[Word]]:
        """The words of each piece of the upload that has any, in order, as the decoder finds them
        (PieceStream: a piece is searched as soon as the model has passed its end); at the end,
        `timings` holds the request's stage times and the metrics have seen it. 504 past `deadline`."""
        pieces = PieceStream(state.engine, hotwords)
        batches: dict[int, WindowResult] = {}  # one result per batch, for its timings
        state.metrics.queue_depth.set(state.batcher.queued + len(upload.windows))
        head = head_windows(state.engine, upload.windows)
        in_order = state.batcher.results_in_order(upload.samples, head=head)
        try:
            for window in upload.windows:
                result = await within(deadline, anext(in_order))
                batches[result.batch_id] = result
                pieces.add(window, result)
                while pieces.ready():
                    if (piece := await pieces.next_piece()).words:
                        yield piece.words
            searching_since = time.perf_counter()
            pieces.finish()
            while (piece := await within(deadline, pieces.next_piece())) is not None:
                if piece.words:
                    yield piece.words
            found = batch_timings(list(batches.values()))
            timings.features, timings.inference = found.features, found.inference
            timings.batch_sizes = found.batch_sizes
            timings.ctc = time.perf_counter() - searching_since  # the wait for words after the model
            observe(upload, timings, time.perf_counter() - upload.start)
        finally:
            await in_order.aclose()  # windows still queued are dropped
            pieces.abandon()

    def server_sent(request: Request, events: AsyncIterator[dict]) -> StreamingResponse:
        """`events` as server-sent events. Errors found before the first event are HTTP errors as
        usual (the caller reads the upload first); after it, a last event holding the error body."""

        async def body():
            try:
                async for event in events:
                    yield formats.server_event(event)
            except ApiError as error:
                yield formats.server_event(error_body(request, error.status, error.message, error.kind))
            except Exception:
                log.exception("request %s failed while streaming", request.state.request_id)
                yield formats.server_event(error_body(request, 500, INTERNAL_ERROR, "server_error"))
            finally:
                await events.aclose()

        return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def openai_events(upload: Upload, deadline: float, hotwords: tuple[str, ...]) -> AsyncIterator[dict]:
        """OpenAI's streamed transcription: `transcript.text.delta` with each piece's words, then
        `transcript.text.done` with the whole text."""
        words: list[Word] = []
        async with aclosing(words_as_found(upload, deadline, Timings(), hotwords)) as pieces:
            async for piece in pieces:
                yield {"type": "transcript.text.delta", "delta": (" " if words else "") + transcript(piece)}
                words.extend(piece)
        yield {"type": "transcript.text.done", "text": transcript(words)}

    async def native_events(upload: Upload, deadline: float, hotwords: tuple[str, ...]) -> AsyncIterator[dict]:
        """`transcript.words` with each piece's timed words, then `transcript.done` with the body
        the same request gets without streaming."""
        words: list[Word] = []
        timings = Timings()
        async with aclosing(words_as_found(upload, deadline, timings, hotwords)) as pieces:
            async for piece in pieces:
                yield {"type": "transcript.words", "words": formats.word_bodies(piece)}
                words.extend(piece)
        total_s = time.perf_counter() - upload.start
        done = Transcription(words, upload.duration, timings, upload.decode_s, total_s)
        yield {"type": "transcript.done", **native_body(done, hotwords)}

    async def streamed(
        data: bytes,
        request: Request,
        events: Callable[[Upload, float, tuple[str, ...]], AsyncIterator[dict]],
        hotwords: tuple[str, ...],
    ) -> StreamingResponse:
        """Read the upload (HTTP errors for bad audio), then answer with `events(upload, deadline, hotwords)`."""
        require_ready()
        deadline = time.monotonic() + settings.request_timeout_s
        upload = await within(deadline, read_upload(data))
        return server_sent(request, events(upload, deadline, hotwords))

    def native_body(result: Transcription, hotwords: tuple[str, ...]) -> dict:
        """`/v1/transcribe`'s answer."""
        return {
            "text": transcript(result.words),
            "words": formats.word_bodies(result.words),
            "hotwords": list(hotwords),
            "duration": round(result.duration, 3),
            "model": settings.model_name,
            "backend": serving_backend(),
            "decoder": settings.decoding(),
            "provider": state.engine.recognizer.provider,
            "timings_ms": {
                k: round(v * 1000, 2)
                for k, v in (
                    ("decode", result.decode_s),
                    ("features", result.timings.features),
                    ("inference", result.timings.inference),
                    ("ctc", result.timings.ctc),
                    ("total", result.total_s),
                )
            },
            "batch_sizes": result.timings.batch_sizes,
        }

    async def read_upload(data: bytes) -> Upload:
        """Read the audio (400/413/415 for what cannot be) and cut it into the model's windows."""
        engine = state.engine
        start = time.perf_counter()
        audio = await asyncio.to_thread(decode_audio, data, engine.sample_rate, settings.max_audio_seconds)
        decode_s = time.perf_counter() - start
        windows, samples = engine.windows_of(audio.samples, settings.chunk_seconds, settings.chunk_overlap_seconds)
        return Upload(windows, samples, audio.seconds, decode_s, start)

    def observe(upload: Upload, timings: Timings, total_s: float) -> None:
        """A finished transcription's stage times and audio in the metrics."""
        metrics = state.metrics
        for stage, seconds in (
            ("decode", upload.decode_s),
            ("features", timings.features),
            ("inference", timings.inference),
            ("ctc", timings.ctc),
            ("total", total_s),
        ):
            metrics.stage_seconds.labels(stage=stage).observe(seconds)
        metrics.audio_seconds.inc(upload.duration)
        metrics.real_time_factor.observe(total_s / upload.duration)

    async def read_form(request: Request) -> tuple[bytes, dict[str, list[str]]]:
        """The multipart `file` and the other fields (repeatable ones as lists)."""
        try:
            form = await request.form(max_files=1, max_fields=32, max_part_size=64 * 1024)
        except MultiPartException as error:
            raise ApiError(400, f"malformed multipart form: {error.message}") from None
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "the form needs a `file` field holding the audio")
        data = await upload.read()
        fields: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields.setdefault(key, []).append(value)
        return data, fields

    async def deny(websocket: WebSocket, error: ApiError) -> None:
        """Refuse a WebSocket handshake with an HTTP error, where the server can send one."""
        state.metrics.requests.labels(endpoint="/v1/listen", status=error.status).inc()
        body = error_body(websocket, error.status, error.message, error.kind)
        try:
            await websocket.send_denial_response(JSONResponse(body, error.status, headers=error.headers))
        except RuntimeError:  # the server has no denial responses: a close during the handshake (403)
            await websocket.close(live.POLICY_VIOLATION, reason=error.message[:120])

    @app.websocket("/v1/listen")
    async def listen(websocket: WebSocket):
        """Live transcription (app.live): raw 16-bit PCM in binary messages; query parameters
        `sample_rate`, `channels`, `encoding=linear16`, `interim_results`, `language`, and
        `hotwords` or Deepgram's `keywords`."""
        websocket.state.request_id = websocket.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        try:
            subprotocol = authorize_socket(websocket)
            require_ready()
            if state.live_streams >= settings.live_max_streams:
                raise ApiError(503, f"{settings.live_max_streams} live streams are open: the limit", "unavailable")
            try:
                options = live.live_options(websocket.query_params)
            except ValueError as error:
                raise ApiError(400, str(error)) from None
            hotwords = requested_hotwords(live.hotword_fields(websocket.query_params))
        except ApiError as error:
            await deny(websocket, error)
            return
        state.metrics.requests.labels(endpoint="/v1/listen", status=101).inc()
        request_id = websocket.state.request_id
        await websocket.accept(subprotocol=subprotocol, headers=[(b"x-request-id", request_id.encode())])
        windows = live.LiveWindows(
            settings.live_step_seconds,
            settings.live_context_seconds,
            settings.live_lookahead_seconds,
            settings.live_piece_seconds,
            settings.live_pause_probability or None,
        )
        transcriber = live.LiveTranscriber(state.engine, state.batcher.recognise, windows, hotwords)
        limits = live.LiveLimits(settings.live_idle_seconds, settings.max_audio_seconds)
        state.live_streams += 1
        state.metrics.live_streams.inc()
        try:
            lag = state.metrics.live_final_lag.observe
            await live.serve(websocket, transcriber, options, limits, request_id, settings.model_name, lag)
        finally:
            state.live_streams -= 1
            state.metrics.live_streams.dec()
            state.metrics.audio_seconds.inc(transcriber.seconds)

    @app.get("/health/live")
    @app.get("/v2/health/live")  # the paths Triton and KServe v2 clients probe
    async def alive():
        return {"status": "alive"}

    @app.get("/health/ready")
    @app.get("/v2/health/ready")
    async def ready():
        if state.phase == "ready":
            return {
                "status": "ready",
                "model": settings.model_name,
                "backend": serving_backend(),
                "decoder": settings.decoding(),
                "language_model": settings.language_model_name(),
                "search_workers": settings.search_worker_count(),
                "provider": state.engine.recognizer.provider,
                "from_cache": state.prepared.from_cache,
            }
        return JSONResponse({"status": state.phase, "detail": state.error}, 503)

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {
            "object": "list",
            "data": [
                {
                    "id": settings.model_name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "qasr",
                    "backend": serving_backend(),
                }
            ],
        }

    @app.get("/metrics")
    async def metrics(request: Request):
        if settings.metrics_need_key:
            authorize(request)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/transcribe", openapi_extra=NATIVE_BODY)
    async def transcribe_native(request: Request):
        """Multipart `file`, or the audio file as the raw request body; `stream=true` for server-sent
        events and `hotwords` (words separated by commas or spaces, "words in double quotes" a phrase;
        repeatable) for words and phrases the lexicon search is to favour, each a query parameter or a
        form field."""
        authorize(request)
        fields: dict[str, list[str]] = {}
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            data, fields = await read_form(request)
        else:
            data = await request.body()
        stream = stream_wanted(fields.get("stream", request.query_params.getlist("stream")))
        hotwords = requested_hotwords(fields.get("hotwords", request.query_params.getlist("hotwords")))
        if stream:
            return await streamed(data, request, native_events, hotwords)
        return native_body(await transcribe(data, hotwords), hotwords)

    @app.post("/v1/audio/transcriptions", openapi_extra=OPENAI_BODY)
    @app.post("/v1/audio/translations", openapi_extra=OPENAI_BODY)  # into English: the model's English words
    async def transcribe_openai(request: Request):
        """OpenAI's transcription endpoint: multipart `file`, `model`, `language`, `response_format`,
        `timestamp_granularities[]`, `stream`, `prompt` (its rarer lexicon words and capitalised names
        become hotwords, HotwordLexicon.from_prompt);
        `temperature` is accepted and ignored. Also OpenAI's translation endpoint, whose answer is
        English text: an English model's transcript is that."""
        authorize(request)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(415, "send multipart/form-data with a `file` field (OpenAI's transcription API)")
        data, fields = await read_form(request)
        response_format = fields.get("response_format", ["json"])[-1]
        if response_format not in RESPONSE_FORMATS:
            raise ApiError(400, f"response_format {response_format!r}: choose one of {', '.join(RESPONSE_FORMATS)}")
        language = fields.get("language", ["en"])[-1].strip().lower()
        if language not in LANGUAGES:
            raise ApiError(400, f"language {language!r}: this model transcribes English only ('en')")
        granularities = set(fields.get("timestamp_granularities[]", []) + fields.get("timestamp_granularities", []))
        if granularities - {"word", "segment"}:
            raise ApiError(400, "timestamp_granularities[] takes 'word' and/or 'segment'")
        hotwords = prompt_hotwords(fields.get("prompt", [""])[-1])
        if stream_wanted(fields.get("stream", [])):
            if response_format not in STREAMED_FORMATS:
                raise ApiError(400, f"stream=true sends text deltas: response_format must be one of {STREAMED_FORMATS}")
            return await streamed(data, request, openai_events, hotwords)
        result = await transcribe(data, hotwords)
        text = transcript(result.words)
        if response_format == "text":
            return PlainTextResponse(text)
        if response_format == "srt":
            return PlainTextResponse(formats.srt(result.words))
        if response_format == "vtt":
            return PlainTextResponse(formats.vtt(result.words), media_type="text/vtt")
        if response_format == "verbose_json":
            return formats.verbose_json(
                result.words,
                result.duration,
                with_words="word" in granularities,
                with_segments="segment" in granularities or not granularities,
            )
        return {"text": text}

    return app
