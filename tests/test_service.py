"""The HTTP service end to end on a small trained QuartzNet: startup job, endpoints, errors, cache."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

import app.api
import app.model_store
import app.settings
import app.transcriber
from app.api import create_app
from app.model_store import COMPLETE_FILE, cache_key
from app.settings import Settings
from app.transcriber import Engine, PieceStream, decode, head_windows, plan_windows
from quantizer.ctc import frame_log_probabilities, greedy_text
from quantizer.features import LogMelFrontEnd
from quantizer.integer_model import IntegerModel
from quantizer.lexicon import LexiconDecoder
from quantizer.runtime import Recognizer, logit_scale
from quantizer.synthetic import SyntheticSettings
from tests.processes import ended_within

RATE = 16000


def speechlike(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Harmonic bursts with pauses: energy where a model sees 'words'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / rate) / k for k in range(1, 6))
    envelope = (np.sin(2 * np.pi * 2.3 * t) > -0.2).astype(np.float32)
    return (0.3 * voiced * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def encode(samples: np.ndarray, rate: int = RATE, format: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def settings_for(nemo: Path, cache: Path, **overrides) -> Settings:
    values = dict(
        model_path=nemo,
        cache_dir=cache,
        calib_samples=2,
        calib_frames=80,
        calib_iters=5,
        threads=1,
        chunk_seconds=4.0,
        chunk_overlap_seconds=0.5,
        max_upload_bytes=2_000_000,
        max_audio_seconds=60.0,
    )
    return Settings(**(values | overrides))


def wait_ready(client: TestClient, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get("/health/ready")
        if response.status_code == 200:
            return response.json()
        assert response.json()["status"] == "starting", response.json()
        time.sleep(0.1)
    raise TimeoutError("service never became ready")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def client(quartznet_nemo, cache):
    service = create_app(settings_for(quartznet_nemo, cache), exit_on_failure=False)
    with TestClient(service, raise_server_exceptions=False) as test_client:  # 500s are answers here
        wait_ready(test_client)
        yield test_client


def test_liveness_is_up_while_the_startup_job_runs_and_readiness_waits_for_it(quartznet_nemo, tmp_path, monkeypatch):
    release = threading.Event()
    real_prepare = app.api.prepare_model

    def slow_prepare(*args):
        release.wait(30)
        return real_prepare(*args)

    monkeypatch.setattr(app.api, "prepare_model", slow_prepare)
    with TestClient(create_app(settings_for(quartznet_nemo, tmp_path), exit_on_failure=False)) as test_client:
        for prefix in ("", "/v2"):
            assert test_client.get(f"{prefix}/health/live").status_code == 200
            assert test_client.get(f"{prefix}/health/ready").status_code == 503
        refused = test_client.post("/v1/transcribe", content=encode(speechlike(1.0)))
        assert refused.status_code == 503 and "not ready" in refused.json()["error"]["message"]
        release.set()
        ready = wait_ready(test_client)
        assert ready["from_cache"] is False
        assert (ready["decoder"], ready["language_model"], ready["search_workers"]) == ("greedy", None, None)


def test_native_endpoint_returns_words_inside_the_audio_with_timings(client):
    response = client.post("/v1/transcribe", files={"file": ("a.wav", encode(speechlike(3.0)), "audio/wav")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["duration"] == pytest.approx(3.0) and body["backend"] == "integer-float"
    assert set(body["timings_ms"]) == {"decode", "features", "inference", "ctc", "total"}
    assert body["text"] == " ".join(w["word"] for w in body["words"])
    ends = [0.0] + [t for w in body["words"] for t in (w["start"], w["end"])]
    assert ends == sorted(ends) and ends[-1] <= body["duration"] + 0.02
    assert all(0 < w["confidence"] <= 1 for w in body["words"])


def test_service_transcript_equals_the_offline_path(client, cache):
    """Same audio through quantizer.features + Recognizer + greedy_text: the same text."""
    samples = speechlike(3.0, seed=3)
    raw = client.post("/v1/transcribe", content=encode(samples), headers={"content-type": "audio/wav"})
    folder = next(p for p in cache.iterdir() if (p / COMPLETE_FILE).exists())
    model = IntegerModel.load(folder)
    features, frames = LogMelFrontEnd(model.preprocessor, model.filterbank, model.window)(
        samples[None], np.array([len(samples)])
    )
    result = Recognizer(folder, "integer", "cpu", threads=1)(features, frames)
    expected = greedy_text(result.tokens[0], int(result.lengths[0]), model.labels)
    assert raw.json()["text"] == " ".join(expected.split())


def test_lexicon_decoding_service_gives_the_offline_beam_search_transcript(quartznet_nemo, cache):
    """QASR_DECODER=lexicon: the words of the lexicon beam search over the offline path's logits.
    The toy model knows no English, so a large word score rewards spelling words at all."""
    wav = encode(speechlike(3.0, seed=3))
    samples, _ = soundfile.read(io.BytesIO(wav), dtype="float32")  # what the service decodes: 16-bit PCM
    settings = settings_for(quartznet_nemo, cache, decoder="lexicon", word_score=20.0)
    service = create_app(settings, exit_on_failure=False)
    with TestClient(service) as test_client:
        ready = wait_ready(test_client)
        assert (ready["decoder"], ready["language_model"]) == ("lexicon", "english-trigram.arpa.gz")
        assert ready["search_workers"] == len(os.sched_getaffinity(0))  # QASR_SEARCH_WORKERS=0: one per core
        body = test_client.post("/v1/transcribe", content=wav).json()
        metrics = test_client.get("/metrics").text
        assert f"qasr_search_workers {float(ready['search_workers'])}" in metrics
        assert "qasr_search_workers_busy 0.0" in metrics  # the one request is done
        hotwords = rare_words_spelt_with(service.state.service.engine, set(body["text"]) - {" "})
        boosted = test_client.post("/v1/transcribe", params={"hotwords": ",".join(hotwords).upper()}, content=wav)
        assert boosted.status_code == 200 and boosted.json()["hotwords"] == hotwords
        streamed = test_client.post("/v1/transcribe", params={"stream": "true", "hotwords": hotwords}, content=wav)
        assert server_events(streamed)[-1]["text"] == boosted.json()["text"]
        prompted = test_client.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper-1", "prompt": "The words are: " + ", ".join(hotwords) + "."},
            files={"file": ("a.wav", wav)},
        )
        assert prompted.json()["text"] == boosted.json()["text"]
        phrase = f"{hotwords[-1]} {hotwords[0]}"
        phrased = test_client.post("/v1/transcribe", params={"hotwords": f'"{phrase.upper()}"'}, content=wav)
        assert phrased.status_code == 200 and phrased.json()["hotwords"] == [phrase]
        unpaired = test_client.post("/v1/transcribe", params={"hotwords": '"the'}, content=wav)
        assert unpaired.status_code == 400
        assert unpaired.json()["error"]["message"] == "hotwords: a double quote without its pair in '\"the'"
        unknown = test_client.post("/v1/transcribe", params={"hotwords": "zzqxv the"}, content=wav)
        assert unknown.status_code == 400
        assert "hotwords not in the lexicon: zzqxv (QASR_VOCABULARY" in unknown.json()["error"]["message"]
        too_many = test_client.post(
            "/v1/transcribe", data={"hotwords": " ".join(f"w{n}" for n in range(1001))}, files={"file": ("a.wav", wav)}
        )
        assert (
            too_many.status_code == 400 and too_many.json()["error"]["message"] == "hotwords: 1001 words, at most 1000"
        )
        lexicon = service.state.service.engine.lexicon
        workers, template = [worker.pid for worker in lexicon._all], lexicon._template.process
    assert len(workers) == ready["search_workers"] and ended_within(workers, 5)  # ended at shutdown
    assert template.returncode == 0
    folder = next(p for p in cache.iterdir() if (p / COMPLETE_FILE).exists())
    model = IntegerModel.load(folder)
    features, frames = LogMelFrontEnd.of(model)(samples[None], np.array([len(samples)]))
    result = Recognizer(folder, "integer", "cpu", threads=1)(features, frames, with_logits=True)
    valid = int(result.lengths[0])
    log_probabilities = frame_log_probabilities(result.logits[0, :, :valid], logit_scale(model, "integer"))
    decoder = LexiconDecoder(model.labels, settings.lexicon())
    path = decoder.best_path(log_probabilities)
    assert body["decoder"] == "lexicon" and body["hotwords"] == []
    assert body["text"]  # the word score makes the toy model's frames spell some words
    assert body["text"] == " ".join(greedy_text(path, valid, model.labels).split())
    assert [w["word"] for w in body["words"]] == body["text"].split()
    boosted_path = decoder.best_path(log_probabilities, hotwords)
    assert boosted.json()["text"] == " ".join(greedy_text(boosted_path, valid, model.labels).split())
    assert boosted.json()["text"] != body["text"]
    phrased_path = decoder.best_path(log_probabilities, [phrase])
    assert phrased.json()["text"] == " ".join(greedy_text(phrased_path, valid, model.labels).split())


def rare_words_spelt_with(engine: Engine, letters: set[str]) -> list[str]:
    """The lexicon's two- and three-letter words outside its COMMON_WORDS likeliest that spell
    with `letters` only, in order: hotwords the toy model's letter soup can turn into."""
    lexicon = engine.hotword_lexicon
    return sorted(w for w in lexicon.words - lexicon.common if len(w) in (2, 3) and set(w) <= letters)


def test_hotwords_need_the_lexicon_search_and_a_greedy_service_ignores_a_prompt(client):
    clip = encode(speechlike(2.0))
    refused = client.post("/v1/transcribe", data={"hotwords": "cat"}, files={"file": ("a.wav", clip)})
    assert refused.status_code == 400 and "need the lexicon decoder" in refused.json()["error"]["message"]
    native = client.post("/v1/transcribe", content=clip).json()
    prompted = client.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1", "prompt": "Zanzibar"}, files={"file": ("a.wav", clip)}
    )
    assert prompted.status_code == 200 and prompted.json()["text"] == native["text"]


def test_a_search_worker_that_dies_fails_one_request_and_the_service_goes_on(quartznet_nemo, cache):
    wav = encode(speechlike(3.0, seed=3))
    settings = settings_for(quartznet_nemo, cache, decoder="lexicon", word_score=20.0, search_workers=1)
    service = create_app(settings, exit_on_failure=False)
    with TestClient(service, raise_server_exceptions=False) as test_client:  # the 500 a client sees
        wait_ready(test_client)
        first = test_client.post("/v1/transcribe", content=wav).json()["text"]
        (worker,) = test_client.app.state.service.engine.lexicon._all
        os.kill(worker.pid, signal.SIGKILL)
        assert ended_within([worker.pid], 5)
        failed = test_client.post("/v1/transcribe", content=wav, headers={"x-request-id": "dead-worker"})
        assert failed.status_code == 500
        assert failed.json()["error"]["request_id"] == "dead-worker"
        assert test_client.get("/health/ready").status_code == 200
        again = test_client.post("/v1/transcribe", content=wav)
        assert again.status_code == 200 and again.json()["text"] == first


def test_integer_float_is_served_only_where_it_matches_the_strict_graph(client, cache, monkeypatch, caplog):
    """The engine checks integer-float against the strict integer graph when it starts; where they
    differ (here: as if they did) it serves the strict integer graph and says so."""
    assert client.get("/health/ready").json()["backend"] == "integer-float"
    folder = next(p for p in cache.iterdir() if (p / COMPLETE_FILE).exists())
    monkeypatch.setattr(app.transcriber, "same_logits", lambda recognizer, other, features_in: False)
    engine = Engine(folder, "integer-float", "cpu", 1)
    assert engine.backend == engine.recognizer.backend == "integer"
    assert "serving the strict integer graph instead" in caplog.text


def test_padded_shapes_give_the_frames_of_unpadded_batches(client, cache, monkeypatch):
    """GPU providers pad every batch to a few shapes (app.shapes); forced on here on the CPU, where
    the integer graph is exact, padding must not change one frame's token or probability."""
    folder = next(p for p in cache.iterdir() if (p / COMPLETE_FILE).exists())
    plain = Engine(folder, "integer", "cpu", 1, window_seconds=4.0, max_batch=3, pad_shapes="auto")
    shapes_run = set()
    run = Recognizer.__call__
    monkeypatch.setattr(
        Recognizer, "__call__", lambda self, f, n, **kw: shapes_run.add(f.shape) or run(self, f, n, **kw)
    )
    padded = Engine(folder, "integer", "cpu", 1, window_seconds=4.0, max_batch=3, pad_shapes="on")
    assert plain.buckets is None  # auto pads on GPU providers only
    assert padded.buckets.shapes() == [(1, 128), (1, 256), (1, 416), (3, 128), (3, 256), (3, 416)]
    bins = padded.front_end.bins
    assert shapes_run == {(b, bins, t) for b, t in padded.buckets.shapes()}  # startup runs no shape but the buckets
    assert padded.frame_samples == plain.frame_samples
    assert padded.warmup_s > 0
    windows = [speechlike(0.7), speechlike(2.3, seed=1), speechlike(4.0, seed=2)]
    for batch in ([windows[0]], windows[:2], windows):
        for mine, theirs in zip(padded.run(batch), plain.run(batch), strict=True):
            np.testing.assert_array_equal(mine.log_probabilities, theirs.log_probabilities)


def test_long_audio_is_recognised_in_batched_windows(client):
    response = client.post("/v1/transcribe", content=encode(speechlike(11.0)))
    body = response.json()
    assert response.status_code == 200 and body["duration"] == pytest.approx(11.0)
    assert sum(body["batch_sizes"]) >= 3  # 4 s windows, 0.5 s context each side
    starts = [w["start"] for w in body["words"]]
    assert starts == sorted(starts)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("44.1 kHz stereo WAV", lambda: encode(np.stack([speechlike(2.0, rate=44100)] * 2, 1), 44100)),
        ("8 kHz 24-bit WAV", lambda: encode(speechlike(2.0, rate=8000), 8000, subtype="PCM_24")),
        ("float WAV", lambda: encode(speechlike(2.0), subtype="FLOAT")),
        ("FLAC", lambda: encode(speechlike(2.0), format="FLAC")),
        ("OGG Vorbis", lambda: encode(speechlike(2.0), format="OGG", subtype="VORBIS")),
        ("OGG Opus", lambda: encode(speechlike(2.0, rate=48000), 48000, format="OGG", subtype="OPUS")),
        ("MP3", lambda: encode(speechlike(2.0, rate=44100), 44100, format="MP3", subtype="MPEG_LAYER_III")),
    ],
)
def test_audio_formats_and_rates_are_accepted(client, name, data):
    response = client.post("/v1/transcribe", files={"file": ("clip", data(), "application/octet-stream")})
    assert response.status_code == 200, (name, response.text)
    assert response.json()["duration"] == pytest.approx(2.0, abs=0.06)


def nan_wav() -> bytes:
    samples = speechlike(1.0)
    samples[100] = np.nan
    return encode(samples, subtype="FLOAT")


@pytest.mark.parametrize(
    ("data", "status", "phrase"),
    [
        (b"", 400, "empty"),
        (b"\x00\x01garbage" * 100, 415, "not a readable audio file (Format not recognised.)"),
        (b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 200, 415, "M4A"),
        (lambda: encode(speechlike(1.0))[:44], 400, "no samples"),
        (lambda: encode(np.zeros(RATE, np.float32)), 400, "silence"),
        (nan_wav, 400, "NaN"),
        (lambda: encode(speechlike(0.05)), 400, "at least 100 ms"),
        (lambda: encode(np.tile(speechlike(1.0), 61), subtype="PCM_U8"), 413, "limit is 60 s"),
        (lambda: b"RIFF" + bytes(3_000_000), 413, "larger than"),
    ],
)
def test_bad_uploads_get_a_clear_4xx_json_error(client, data, status, phrase):
    data = data() if callable(data) else data
    for response in (
        client.post("/v1/transcribe", content=data, headers={"content-type": "application/octet-stream"}),
        client.post("/v1/audio/transcriptions", files={"file": ("x.wav", data)}, data={"model": "whisper-1"}),
    ):
        assert response.status_code == status, response.text
        assert phrase in response.json()["error"]["message"]
    assert client.get("/health/ready").status_code == 200


def test_m4a_and_webm_uploads_are_transcribed(client):
    """What phones and browsers record: AAC in M4A, Opus in WebM, read through FFmpeg (PyAV)."""
    from tests.test_audio import encoded

    stereo = np.stack([speechlike(2.0, rate=48000), speechlike(2.0, seed=1, rate=48000)])
    for container, codec, name in (("ipod", "aac", "memo.m4a"), ("webm", "libopus", "clip.webm")):
        data = encoded(stereo, 48000, container, codec)
        form = {"model": "whisper-1", "response_format": "verbose_json"}
        response = client.post("/v1/audio/transcriptions", files={"file": (name, data)}, data=form)
        assert response.status_code == 200, response.text
        assert response.json()["duration"] == pytest.approx(2.0, abs=0.1)


def test_openai_form_errors_are_400s(client):
    clip, silence = encode(speechlike(1.0)), encode(np.zeros(RATE, np.float32))
    cases = [
        ({"model": "whisper-1"}, None, "`file` field"),
        ({"model": "whisper-1", "response_format": "xml"}, clip, "response_format"),
        ({"model": "whisper-1", "language": "fr"}, clip, "English only"),
        ({"model": "whisper-1", "timestamp_granularities[]": "char"}, clip, "timestamp_granularities"),
        ({"model": "whisper-1", "stream": "yes"}, clip, "'true' or 'false'"),
        ({"model": "whisper-1", "stream": "true", "response_format": "srt"}, clip, "text deltas"),
        ({"model": "whisper-1", "stream": "true"}, silence, "digital silence"),  # an HTTP error, not an event
    ]
    for fields, file, phrase in cases:
        files = {"file": ("a.wav", file)} if file else {"other": ("a.txt", b"x")}
        response = client.post("/v1/audio/transcriptions", data=fields, files=files)
        assert response.status_code == 400 and phrase in response.json()["error"]["message"], response.text


def test_the_official_openai_client_works_unchanged(client, tmp_path):
    from openai import OpenAI

    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(speechlike(3.0)))
    openai = OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=client)
    native = client.post("/v1/transcribe", content=clip.read_bytes()).json()

    with clip.open("rb") as audio:
        assert openai.audio.transcriptions.create(model="whisper-1", file=audio).text == native["text"]
    with clip.open("rb") as audio:
        assert openai.audio.translations.create(model="whisper-1", file=audio).text == native["text"]
    with clip.open("rb") as audio:
        verbose = openai.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert verbose.duration == pytest.approx(3.0) and verbose.text == native["text"]
    assert [w.word for w in verbose.words] == [w["word"] for w in native["words"]]
    assert all(s.start <= s.end for s in verbose.segments)
    with clip.open("rb") as audio:
        srt = openai.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    with clip.open("rb") as audio:
        vtt = openai.audio.transcriptions.create(model="whisper-1", file=audio, response_format="vtt")
    if native["words"]:
        assert srt.startswith("1\n00:00:") and " --> " in srt
    assert vtt.startswith("WEBVTT")
    assert [m.id for m in openai.models.list()] == ["qasr-en-quartznet5x5"]


def server_events(response) -> list[dict]:
    """The JSON payloads of a text/event-stream body's `data:` lines."""
    assert response.headers["content-type"].startswith("text/event-stream"), response.text
    return [json.loads(line[len("data: ") :]) for line in response.text.splitlines() if line.startswith("data: ")]


def test_pieces_are_searched_while_later_windows_are_still_coming_and_give_the_whole_inputs_words(client, cache):
    """PieceStream starts a piece's search once the windows have passed its settled cut; its words
    (times and confidences too) are those of decoding the stitched input at once."""
    folder = next(p for p in cache.iterdir() if (p / COMPLETE_FILE).exists())
    lexicon = replace(app.settings.Settings().lexicon(), word_score=20.0, max_frames=60)
    engine = Engine(folder, "integer", "cpu", 1, window_seconds=2.0, lexicon=lexicon, search_workers=2)
    try:
        samples = speechlike(12.0, seed=5)
        windows = plan_windows(len(samples), 2 * RATE, RATE // 2, engine.frame_samples)
        results = [engine.run([samples[w.start : w.stop]])[0] for w in windows]
        whole, _ = decode(engine, windows, results)

        async def streamed() -> tuple[list, list[int], int]:
            pieces, searching = PieceStream(engine), []
            head = head_windows(engine, windows)
            for window, result in zip(windows, results, strict=True):
                pieces.add(window, result)
                searching.append(len(pieces.searches))
            assert searching[: head - 1] == [0] * (head - 1) and searching[head - 1] == 1  # it settles the first cut
            pieces.finish()
            words, spans = [], []
            while (piece := await pieces.next_piece()) is not None:
                words += piece.words
                spans.append((piece.first_frame, piece.frames))
            early = PieceStream(engine)  # a stream that ends after its first pieces
            for window, result in list(zip(windows, results, strict=True))[: head + 2]:
                early.add(window, result)
            pending = list(early.searches)
            early.abandon()
            await asyncio.gather(*pending, return_exceptions=True)
            assert pending and all(search.cancelled() for search in pending) and await early.next_piece() is None
            ends = [first + frames for first, frames in spans]
            assert [first for first, _ in spans] == [0, *ends[:-1]]  # the pieces tile the input
            assert ends[-1] == sum(w.keep_to - w.keep_from for w in windows)
            return words, searching, head

        words, searching, head = asyncio.run(streamed())
    finally:
        engine.close()
    assert len(windows) >= 8 and len(whole) >= 3 and 1 <= head < len(windows) // 2
    assert searching[len(windows) // 2] >= 2  # half way through, pieces are already being searched
    assert words == whole


def test_a_streamed_transcription_sends_each_pieces_words_then_the_whole_text(quartznet_nemo, cache, monkeypatch):
    """stream=true: one `transcript.text.delta` per piece the lexicon search found words in (pieces
    of 60 frames and windows of 4 s here, so several of each), in order, then
    `transcript.text.done`: the text of the same request without streaming. The official client
    reads the same events."""
    from openai import OpenAI

    lexicon = app.settings.Settings.lexicon
    monkeypatch.setattr(app.settings.Settings, "lexicon", lambda self: replace(lexicon(self), max_frames=60))
    wav = encode(speechlike(16.0, seed=4))
    settings = settings_for(
        quartznet_nemo,
        cache,
        decoder="lexicon",
        word_score=20.0,
        search_workers=2,
        chunk_seconds=4.0,
        chunk_overlap_seconds=1.0,
    )
    with TestClient(create_app(settings, exit_on_failure=False)) as test_client:
        wait_ready(test_client)
        whole = test_client.post("/v1/audio/transcriptions", data={"model": "m"}, files={"file": ("a.wav", wav)})
        streamed = test_client.post(
            "/v1/audio/transcriptions", data={"model": "m", "stream": "true"}, files={"file": ("a.wav", wav)}
        )
        openai = OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=test_client)
        events = list(openai.audio.transcriptions.create(model="m", file=("a.wav", wav), stream=True))
    text = whole.json()["text"]
    *deltas, done = server_events(streamed)
    assert len(deltas) >= 3 and all(d["type"] == "transcript.text.delta" for d in deltas)
    assert "".join(d["delta"] for d in deltas) == done["text"] == text
    assert done["type"] == "transcript.text.done"
    assert [e.type for e in events] == [e["type"] for e in [*deltas, done]] and events[-1].text == text


def with_spoken_words(engine: Engine, monkeypatch) -> None:
    """Make `engine.run` give each window random frame scores, the same for the same samples: the
    small test model never emits a space on its own, and greedy pieces end at spaces."""
    run = engine.run

    def random_scores(windows: list[np.ndarray], batch_id: int = 0) -> list:
        results = run(windows, batch_id)
        for samples, result in zip(windows, results, strict=True):
            rng = np.random.default_rng(zlib.crc32(samples.tobytes()))
            logits = rng.standard_normal(result.log_probabilities.shape).astype(np.float32) * 3
            logits[:, engine.labels.index(" ")] += 3  # about one frame in six a space
            result.log_probabilities = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        return results

    monkeypatch.setattr(engine, "run", random_scores)


def test_greedy_pieces_end_at_each_windows_last_space_and_give_the_whole_inputs_words(client, monkeypatch):
    """Greedy decoding: after each window, the words before its last space frame are decoded, so a
    long input's words come window by window, the same words, times and confidences as at once."""
    engine = client.app.state.service.engine
    with_spoken_words(engine, monkeypatch)
    samples = speechlike(16.0, seed=6)
    windows = plan_windows(len(samples), 2 * RATE, RATE // 2, engine.frame_samples)
    results = [engine.run([samples[w.start : w.stop]])[0] for w in windows]
    whole, _ = decode(engine, windows, results)

    async def streamed() -> tuple[list, list[int]]:
        pieces, searching = PieceStream(engine), []
        for window, result in zip(windows, results, strict=True):
            pieces.add(window, result)
            searching.append(len(pieces.searches))
        pieces.finish()
        words = []
        while (piece := await pieces.next_piece()) is not None:
            words += piece.words
        return words, searching

    words, searching = asyncio.run(streamed())
    assert engine.piece_frames is None and head_windows(engine, windows) == 1
    assert len(whole) >= 20 and searching == list(range(1, len(windows) + 1))  # one piece per window
    assert words == whole


def test_the_native_endpoint_streams_timed_words_then_its_whole_answer(client, monkeypatch):
    """/v1/transcribe with stream=true (query or form field): `transcript.words` events whose words
    add up to those of `transcript.done`, which is the answer of the same request without streaming."""
    with_spoken_words(client.app.state.service.engine, monkeypatch)
    wav = encode(speechlike(16.0, seed=6))
    whole = client.post("/v1/transcribe", content=wav).json()
    by_query = client.post("/v1/transcribe?stream=true", content=wav)
    by_form = client.post("/v1/transcribe", data={"stream": "true"}, files={"file": ("a.wav", wav)})
    for response in (by_query, by_form):
        *pieces, done = server_events(response)
        assert len(pieces) >= 4 and {p["type"] for p in pieces} == {"transcript.words"}
        assert done["type"] == "transcript.done"
        assert [w for p in pieces for w in p["words"]] == done["words"] == whole["words"]
        assert done["text"] == whole["text"] and done["duration"] == whole["duration"]
        assert set(done["timings_ms"]) == set(whole["timings_ms"]) and done["timings_ms"]["total"] > 0
    openai = client.post("/v1/audio/transcriptions", data={"model": "m", "stream": "true"}, files={"file": ("a", wav)})
    *deltas, done = server_events(openai)
    assert len(deltas) >= 4 and "".join(d["delta"] for d in deltas) == done["text"] == whole["text"]


def test_native_stream_errors_are_http_errors_before_the_first_event(client):
    clip, silence = encode(speechlike(1.0)), encode(np.zeros(RATE, np.float32))
    for url, body, phrase in (
        ("/v1/transcribe?stream=maybe", clip, "'true' or 'false'"),
        ("/v1/transcribe?stream=true", silence, "digital silence"),
        ("/v1/transcribe?stream=true", b"not audio", ""),
    ):
        response = client.post(url, content=body)
        assert 400 <= response.status_code < 500 and phrase in response.json()["error"]["message"], response.text
    response = client.post("/v1/transcribe", data={"stream": "1"}, files={"file": ("a.wav", clip)})
    assert response.status_code == 400 and "'true' or 'false'" in response.json()["error"]["message"]


def test_a_failure_while_streaming_ends_the_stream_with_an_error_event(client, monkeypatch):
    """Once events have been sent the status is 200, so a search that fails later sends an `error`
    body as an event (the official client raises it); the service goes on."""
    engine = client.app.state.service.engine

    def first_piece_then_failure(log_probabilities):
        yield log_probabilities[: len(log_probabilities) // 2].argmax(axis=1)
        raise RuntimeError("the search broke")

    monkeypatch.setattr(engine, "path_pieces", first_piece_then_failure)
    response = client.post(
        "/v1/audio/transcriptions",
        data={"model": "m", "stream": "true"},
        files={"file": ("a.wav", encode(speechlike(3.0)))},
        headers={"x-request-id": "broken-stream"},
    )
    assert response.status_code == 200
    *_, last = server_events(response)
    assert last["error"]["code"] == 500 and last["error"]["request_id"] == "broken-stream"
    monkeypatch.undo()
    assert client.post("/v1/transcribe", content=encode(speechlike(1.0))).status_code == 200


def test_metrics_count_requests_stages_and_the_quantization(client):
    client.post("/v1/transcribe", content=encode(speechlike(1.0)))
    text = client.get("/metrics").text
    for name in (
        'qasr_requests_total{endpoint="/v1/transcribe",status="200"}',
        'qasr_stage_seconds_count{stage="inference"}',
        "qasr_audio_seconds_total",
        "qasr_real_time_factor_bucket",
        "qasr_batch_size_bucket",
        "qasr_queue_windows",
        'qasr_quantization{field="argmax_agreement"}',
        "qasr_quantize_seconds",
        "qasr_ready 1.0",
    ):
        assert name in text, name


def test_an_inference_failure_fails_only_that_request(client, monkeypatch):
    engine = client.app.state.service.engine
    real_run = engine.run
    calls = []

    def fail_once(windows, batch_id=0):
        calls.append(batch_id)
        if len(calls) == 1:
            raise RuntimeError("simulated ONNX Runtime failure")
        return real_run(windows, batch_id)

    monkeypatch.setattr(engine, "run", fail_once)
    failed = client.post("/v1/transcribe", content=encode(speechlike(1.0)), headers={"x-request-id": "abc123"})
    assert failed.status_code == 500 and failed.json()["error"]["request_id"] == "abc123"
    assert "Traceback" not in failed.text and "simulated" not in failed.text
    assert client.post("/v1/transcribe", content=encode(speechlike(1.0))).status_code == 200


def test_api_key_guards_transcription_when_set(quartznet_nemo, cache):
    settings = settings_for(quartznet_nemo, cache, api_key="s3cret", metrics_need_key=True)
    with TestClient(create_app(settings, exit_on_failure=False)) as test_client:
        wait_ready(test_client)
        clip = encode(speechlike(1.0))
        assert test_client.post("/v1/transcribe", content=clip).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert test_client.post("/v1/transcribe", content=clip, headers=wrong).status_code == 401
        assert test_client.get("/metrics").status_code == 401
        good = {"authorization": "Bearer s3cret"}
        assert test_client.post("/v1/transcribe", content=clip, headers=good).status_code == 200
        for probe in ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"):
            assert test_client.get(probe).status_code == 200  # probes never need the key


def test_the_cache_is_reused_and_a_corrupt_entry_is_rebuilt(quartznet_nemo, tmp_path):
    def start() -> dict:
        with TestClient(create_app(settings_for(quartznet_nemo, tmp_path), exit_on_failure=False)) as test_client:
            return wait_ready(test_client)

    assert start()["from_cache"] is False
    assert start()["from_cache"] is True
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    with open(entry / "integer.onnx", "r+b") as onnx_file:
        onnx_file.seek(100)
        onnx_file.write(b"\xff" * 16)
    assert start()["from_cache"] is False
    assert json.loads((entry / COMPLETE_FILE).read_text())["files"]  # sealed again
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".building")]


def test_a_cache_entry_is_per_kind_of_cpu(monkeypatch):
    settings = SyntheticSettings()
    keys = set()
    for weights in ("s8", "u8"):  # an entry moved to a CPU that wants the other int8 weights is rebuilt
        monkeypatch.setattr(app.model_store, "int8_weight_type", lambda weights=weights: weights)
        keys.add(cache_key("0" * 64, settings))
    assert len(keys) == 2


def test_an_unwritable_cache_still_serves(quartznet_nemo, tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with TestClient(create_app(settings_for(quartznet_nemo, blocked), exit_on_failure=False)) as test_client:
        assert wait_ready(test_client)["from_cache"] is False
        assert test_client.post("/v1/transcribe", content=encode(speechlike(1.0))).status_code == 200
    assert "not writable" in caplog.text


def test_concurrent_requests_share_batches(client):
    clip = encode(speechlike(2.0))
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: client.post("/v1/transcribe", content=clip), range(6)))
    assert [r.status_code for r in results] == [200] * 6
    assert len({r.json()["text"] for r in results}) == 1  # batched or not, the same answer
    assert max(size for r in results for size in r.json()["batch_sizes"]) > 1


def test_auto_decoding_is_the_lexicon_search_for_the_shipped_model_only(tmp_path, quartznet_nemo, monkeypatch):
    from app.settings import SHIPPED_MODEL

    shipped = Settings(model_path=SHIPPED_MODEL)
    assert (shipped.decoding(), shipped.language_model_name()) == ("lexicon", "english-trigram.arpa.gz")
    assert shipped.lexicon() is not None
    other = Settings(model_path=quartznet_nemo)
    assert (other.decoding(), other.lexicon(), other.language_model_name()) == ("greedy", None, None)
    copy = tmp_path / "copy.nemo"  # as in the container image: the same model at another path
    copy.write_bytes(SHIPPED_MODEL.read_bytes())
    assert Settings(model_path=copy).decoding() == "lexicon"
    assert Settings(model_path=SHIPPED_MODEL, decoder="greedy").decoding() == "greedy"
    assert Settings(model_path=quartznet_nemo, decoder="lexicon").decoding() == "lexicon"
    padded = tmp_path / "padded.nemo"  # one byte more: another model, told apart without hashing it
    padded.write_bytes(SHIPPED_MODEL.read_bytes() + b"\0")
    monkeypatch.setattr(app.settings, "file_sha256", lambda path: pytest.fail(f"{path} was hashed"))
    assert Settings(model_path=padded).decoding() == "greedy"
    missing_lm = Settings(model_path=SHIPPED_MODEL, language_model=str(tmp_path / "none.arpa"))
    with pytest.raises(ValueError, match="QASR_LANGUAGE_MODEL"):
        missing_lm.check()


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`QASR_{name.upper()}`" not in readme]
    assert not missing, missing


def test_the_upload_limit_holds_for_chunked_bodies_without_a_length(client):
    def chunks():
        for _ in range(300):  # 3 MB in 10 kB pieces; the limit is 2 MB
            yield b"\x00" * 10_000

    response = client.post("/v1/transcribe", content=chunks(), headers={"content-type": "audio/wav"})
    assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]


def test_a_request_past_the_timeout_gets_504(quartznet_nemo, cache, monkeypatch):
    settings = settings_for(quartznet_nemo, cache, request_timeout_s=0.2)
    with TestClient(create_app(settings, exit_on_failure=False)) as test_client:
        wait_ready(test_client)
        engine = test_client.app.state.service.engine
        real_run = engine.run
        monkeypatch.setattr(engine, "run", lambda windows, batch_id=0: (time.sleep(0.5), real_run(windows))[1])
        response = test_client.post("/v1/transcribe", content=encode(speechlike(1.0)))
        assert response.status_code == 504 and "longer than 0.2 s" in response.json()["error"]["message"]


def test_cors_headers_only_when_configured(client, quartznet_nemo, cache):
    preflight = {"origin": "https://example.com", "access-control-request-method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/transcribe", headers=preflight).headers
    settings = settings_for(quartznet_nemo, cache, cors_origins=["https://example.com"])
    with TestClient(create_app(settings, exit_on_failure=False)) as test_client:
        allowed = test_client.options("/v1/transcribe", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://example.com"
        wait_ready(test_client)  # a startup job still in native code when Python exits aborts the process


@pytest.fixture
def service_environment(quartznet_nemo, cache, monkeypatch):
    """QASR_* variables for the settings `client` runs with, so that `qasr transcribe` finds its cache entry."""
    for name, value in settings_for(quartznet_nemo, cache).model_dump().items():
        if name in (
            "calib_samples",
            "calib_frames",
            "calib_iters",
            "threads",
            "chunk_seconds",
            "chunk_overlap_seconds",
        ):
            monkeypatch.setenv(f"QASR_{name.upper()}", str(value))
    return ["--model", str(quartznet_nemo), "--cache-dir", str(cache)]


def test_qasr_transcribe_gives_the_services_words_for_files(client, service_environment, tmp_path, capsys, monkeypatch):
    from app.cli import main

    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(speechlike(9.0, seed=4)))  # three windows of 4 s
    native = client.post("/v1/transcribe", content=clip.read_bytes()).json()
    assert sum(native["batch_sizes"]) >= 3 and native["text"]  # the windows went through batches
    assert main(["transcribe", str(clip), "--format", "json", *service_environment]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["text"] == native["text"] and body["words"] == native["words"]
    assert body["file"] == str(clip) and body["duration"] == pytest.approx(9.0)
    assert main(["transcribe", str(clip), *service_environment]) == 0
    assert capsys.readouterr().out == native["text"] + "\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(clip.read_bytes())))
    assert main(["transcribe", "-", *service_environment]) == 0
    assert capsys.readouterr().out == native["text"] + "\n"


def test_qasr_transcribe_reports_each_bad_file_and_goes_on(client, service_environment, tmp_path, capsys, monkeypatch):
    from app.cli import main

    clip, garbage = tmp_path / "clip.wav", tmp_path / "notes.wav"
    clip.write_bytes(encode(speechlike(2.0)))
    garbage.write_bytes(b"\x00\x01garbage" * 100)
    missing = tmp_path / "gone.wav"
    assert main(["transcribe", str(garbage), str(clip), str(missing), *service_environment]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{clip}\t") and captured.out.count("\n") == 1
    assert f"{garbage}: not a readable audio file" in captured.err and f"{missing}: [Errno 2]" in captured.err
    assert main(["transcribe", str(clip), "--hotwords", "cat", *service_environment]) == 2
    assert "hotwords need the lexicon decoder" in capsys.readouterr().err
    vocabulary = tmp_path / "words.txt"
    vocabulary.write_text("naïve\n")
    monkeypatch.setenv("QASR_VOCABULARY", str(vocabulary))
    assert main(["transcribe", str(clip), "--decoder", "lexicon", *service_environment]) == 2
    assert "error: " in (error := capsys.readouterr().err) and "line 1: 'naïve'" in error and "Traceback" not in error
    with pytest.raises(SystemExit) as refused:
        main(["transcribe", str(clip), str(clip), "--format", "srt", *service_environment])
    assert refused.value.code == 2 and "--format srt takes one file" in capsys.readouterr().err


def test_qasr_transcribe_searches_files_side_by_side_and_prints_them_in_order(
    service_environment, tmp_path, capsys, monkeypatch
):
    """Several files: the searches run in worker processes (two here), and each file's words,
    printed in the order given, are those it gets alone (searched in this process by default, in
    workers when a count is asked for)."""
    from app.cli import main

    monkeypatch.setenv("QASR_DECODER", "lexicon")
    monkeypatch.setenv("QASR_WORD_SCORE", "20")  # the random model's frames then spell words
    clips = [tmp_path / f"clip{seed}.wav" for seed in range(4)]
    for seed, clip in enumerate(clips):
        clip.write_bytes(encode(speechlike(1.5 + seed, seed=seed)))
    workers_asked = []
    from_settings = Engine.from_settings.__func__

    def spy(cls, folder, settings, search_workers):
        workers_asked.append(search_workers)
        return from_settings(cls, folder, settings, search_workers)

    monkeypatch.setattr(Engine, "from_settings", classmethod(spy))
    alone = []
    for clip in clips:
        assert main(["transcribe", str(clip), *service_environment]) == 0
        alone.append(capsys.readouterr().out.rstrip("\n"))
    assert workers_asked == [None] * 4 and len(set(alone)) == 4  # one file: searched here; four texts
    assert main(["transcribe", str(clips[3]), "--search-workers", "2", *service_environment]) == 0
    assert workers_asked[-1] == 2 and capsys.readouterr().out.rstrip("\n") == alone[3]
    monkeypatch.setenv("QASR_SEARCH_WORKERS", "2")
    garbage = tmp_path / "notes.wav"
    garbage.write_bytes(b"\x00\x01garbage" * 100)
    files = [clips[0], garbage, *clips[1:]]
    assert main(["transcribe", *map(str, files), *service_environment]) == 1
    captured = capsys.readouterr()
    assert workers_asked[-1] == 2
    assert captured.out.splitlines() == [f"{clip}\t{text}" for clip, text in zip(clips, alone, strict=True)]
    assert f"{garbage}: not a readable audio file" in captured.err
