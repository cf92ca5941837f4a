"""Live transcription over a WebSocket (/v1/listen) on the small trained QuartzNet."""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import replace

import numpy as np
import pytest
import soxr
from fastapi.testclient import TestClient
from starlette.datastructures import QueryParams
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

import app.api
import app.settings
from app.api import create_app
from app.live import PcmToMono, hotword_fields, live_options
from tests.processes import served
from tests.test_service import RATE, settings_for, speechlike, wait_ready

PIECE_FRAMES = 60  # the lexicon search's longest piece in these tests, for files and live streams alike


def pcm16(samples: np.ndarray) -> bytes:
    """float samples -> little-endian 16-bit PCM, as a live client sends them."""
    return (np.clip(samples, -1, 32767 / 32768) * 32768).round().astype("<i2").tobytes()


def as_read(samples: np.ndarray) -> np.ndarray:
    """What the service hears of `samples` sent as 16-bit PCM."""
    return np.frombuffer(pcm16(samples), "<i2").astype(np.float32) / 32768


def stream(socket, audio: bytes, piece_bytes: int) -> list[dict]:
    """Send `audio` in pieces, then CloseStream; every message the service sent, up to Metadata."""
    for start in range(0, len(audio), piece_bytes):
        socket.send_bytes(audio[start : start + piece_bytes])
    socket.send_text(json.dumps({"type": "CloseStream"}))
    messages = []
    while not messages or messages[-1]["type"] != "Metadata":
        messages.append(socket.receive_json())
    return messages


@pytest.fixture(scope="module")
def lexicon_client(quartznet_nemo, tmp_path_factory):
    """A lexicon-decoding service whose live windows and pieces are those of its files: 4 s windows
    with 1 s of context, pieces of at most PIECE_FRAMES frames."""
    patch = pytest.MonkeyPatch()
    lexicon = app.settings.Settings.lexicon

    def short_pieces(self):
        settings = lexicon(self)
        return settings and replace(settings, max_frames=PIECE_FRAMES)

    patch.setattr(app.settings.Settings, "lexicon", short_pieces)
    settings = settings_for(
        quartznet_nemo,
        tmp_path_factory.mktemp("cache"),
        decoder="lexicon",
        word_score=20.0,
        search_workers=2,
        chunk_seconds=4.0,
        chunk_overlap_seconds=1.0,
        live_step_seconds=2.0,  # windows of 4 s with 1 s of context each side, as the files'
        live_context_seconds=1.0,
        live_lookahead_seconds=1.0,
        live_piece_seconds=PIECE_FRAMES * 0.02,
        live_pause_probability=0.0,  # pieces end where a file's do
        live_idle_seconds=1.0,
        max_audio_seconds=30.0,
        api_key="sesame",
    )
    with TestClient(create_app(settings, exit_on_failure=False)) as client:
        wait_ready(client)
        assert client.app.state.service.engine.frame_samples == 320  # so pieces are PIECE_FRAMES long live too
        yield client
    patch.undo()


KEY = {"Authorization": "Bearer sesame"}


def test_a_live_stream_gives_the_words_of_the_same_audio_sent_as_a_file(lexicon_client):
    """With the windows and pieces of files, a live stream's final results are the file's words, in
    order, and tile the audio; interim results cover what is not final yet; Metadata ends it."""
    samples = speechlike(14.0, seed=7)
    audio = pcm16(samples)
    whole = lexicon_client.post("/v1/transcribe", content=audio_wav(as_read(samples)), headers=KEY).json()
    with lexicon_client.websocket_connect("/v1/listen?interim_results=true", headers=KEY) as socket:
        messages = stream(socket, audio, piece_bytes=3_201)  # 0.1 s and an odd byte: samples split across messages
    *results, metadata = messages
    finals = [m for m in results if m["is_final"]]
    interims = [m for m in results if not m["is_final"]]
    words = [w for m in finals for w in m["channel"]["alternatives"][0]["words"]]
    assert [(w["word"], w["start"], w["end"]) for w in words] == [
        (w["word"], w["start"], w["end"]) for w in whole["words"]
    ]
    assert len(whole["words"]) >= 5 and len(finals) >= 4
    ends = [round(m["start"] + m["duration"], 3) for m in finals]
    assert [m["start"] for m in finals] == [0.0, *ends[:-1]] and ends[-1] == pytest.approx(14.0, abs=0.02)
    assert interims and all(m["speech_final"] is m["is_final"] for m in results)
    for interim in interims:  # each begins where the finals sent before it end
        before = [m for m in results[: results.index(interim)] if m["is_final"]]
        assert interim["start"] == (round(before[-1]["start"] + before[-1]["duration"], 3) if before else 0.0)
    assert metadata["duration"] == pytest.approx(14.0) and metadata["channels"] == 1
    metrics = lexicon_client.get("/metrics").text
    assert "qasr_live_streams 0.0" in metrics
    assert f"qasr_live_final_lag_seconds_count {float(len(finals))}" in metrics


def test_live_pieces_end_at_the_first_sure_pause_when_asked(lexicon_client):
    """QASR_LIVE_PAUSE_PROBABILITY > 0: a piece ends at its first pause that sure, so pieces are
    shorter and more (finals come sooner), still tiling the audio in order."""
    audio = pcm16(speechlike(14.0, seed=7))
    settings = lexicon_client.app.state.service.settings
    counts = {}
    for probability in (0.0, 0.5):
        settings.live_pause_probability = probability
        with lexicon_client.websocket_connect("/v1/listen", headers=KEY) as socket:
            *finals, _ = stream(socket, audio, piece_bytes=3_200)
        ends = [round(m["start"] + m["duration"], 3) for m in finals]
        assert [m["start"] for m in finals] == [0.0, *ends[:-1]] and ends[-1] == pytest.approx(14.0, abs=0.02)
        counts[probability] = len(finals)
    settings.live_pause_probability = 0.0
    assert counts[0.5] > counts[0.0]


def audio_wav(samples: np.ndarray) -> bytes:
    from tests.test_service import encode

    return encode(samples)


def test_stereo_audio_at_another_rate_is_averaged_and_resampled(lexicon_client):
    samples = speechlike(3.0, seed=2, rate=8000)
    stereo = np.stack([samples, samples * 0.5], axis=1).reshape(-1)  # interleaved
    query = "/v1/listen?sample_rate=8000&channels=2&encoding=linear16"
    with lexicon_client.websocket_connect(query, headers={"Authorization": "Token sesame"}) as socket:
        *results, metadata = stream(socket, pcm16(stereo), piece_bytes=1_600)
    assert metadata["duration"] == pytest.approx(3.0, abs=0.01) and metadata["channels"] == 2
    assert results and all(m["is_final"] for m in results)  # no interim results unless asked for


def test_pcm_split_anywhere_converts_as_a_whole():
    rng = np.random.default_rng(0)
    samples = rng.uniform(-0.5, 0.5, (8000, 3)).astype(np.float32)
    data = pcm16(samples.reshape(-1))
    whole = PcmToMono(8000, 3, 16000).push(data, last=True)
    converter, pieces, start = PcmToMono(8000, 3, 16000), [], 0
    for cut in [*sorted(int(c) for c in rng.integers(0, len(data), 20)), len(data)]:
        pieces.append(converter.push(data[start:cut], last=cut == len(data)))
        start = cut
    assert np.allclose(np.concatenate(pieces), whole, atol=1e-5) and len(whole) == 16000
    mono = np.frombuffer(data, "<i2").reshape(-1, 3).mean(axis=1) / 32768
    assert np.allclose(whole, soxr.resample(mono, 8000, 16000, quality="HQ"), atol=1e-3)
    assert np.array_equal(PcmToMono(16000, 3, 16000).push(data), mono.astype(np.float32))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("encoding=opus", "encoding 'opus': send raw 16-bit little-endian PCM (encoding=linear16)"),
        ("sample_rate=44.1k", "sample_rate '44.1k': a whole number of Hz from 8000 to 48000"),
        ("sample_rate=96000", "sample_rate '96000': a whole number of Hz from 8000 to 48000"),
        ("channels=0", "channels '0': 1 to 8 (interleaved; they are averaged)"),
        ("interim_results=yes", "interim_results: 'true' or 'false'"),
        ("language=fr", "language 'fr': this model transcribes English only ('en')"),
    ],
)
def test_options_a_stream_cannot_take_are_named(query, message):
    with pytest.raises(ValueError) as error:
        live_options(QueryParams(query))
    assert str(error.value) == message


def test_deepgram_keywords_become_hotwords_without_their_intensifiers():
    params = QueryParams("keywords=dashwood:2&keywords=new york:-1.5&hotwords=elinor,marianne")
    assert hotword_fields(params) == ["elinor,marianne", '"dashwood"', '"new york"']


def test_a_handshake_it_cannot_take_is_refused_with_an_http_error(lexicon_client):
    refusals = {
        "/v1/listen": {},  # no key
        "/v1/listen?sample_rate=96000": KEY,
        '/v1/listen?hotwords="the': KEY,
        "/v1/listen?keywords=zzqxv": KEY,
    }
    answers = []
    for path, headers in refusals.items():
        with pytest.raises(WebSocketDenialResponse) as refused:
            lexicon_client.websocket_connect(path, headers=headers).__enter__()
        answers.append((refused.value.status_code, refused.value.json()["error"]["message"]))
    assert answers[0] == (
        401,
        "missing or wrong API key: send `Authorization: Bearer <key>`, or the subprotocols `token, <key>`",
    )
    assert answers[1] == (400, "sample_rate '96000': a whole number of Hz from 8000 to 48000")
    assert answers[2] == (400, "hotwords: a double quote without its pair in '\"the'")
    assert answers[3][0] == 400 and "hotwords not in the lexicon: zzqxv" in answers[3][1]


def test_browsers_send_the_key_as_a_subprotocol(lexicon_client):
    with lexicon_client.websocket_connect("/v1/listen", subprotocols=["token", "sesame"]) as socket:
        assert socket.accepted_subprotocol == "token"
        *results, metadata = stream(socket, pcm16(speechlike(1.0)), piece_bytes=32_000)
    assert metadata["type"] == "Metadata" and metadata["duration"] == pytest.approx(1.0)


def errors_of(socket) -> tuple[dict, int]:
    """The Error message a stream ends with, and the close code after it."""
    while (message := socket.receive_json())["type"] != "Error":
        pass
    with pytest.raises(WebSocketDisconnect) as closed:
        socket.receive_json()
    return message, closed.value.code


def test_a_stream_that_breaks_the_rules_gets_an_error_and_is_closed_while_the_service_goes_on(lexicon_client):
    with lexicon_client.websocket_connect("/v1/listen", headers=KEY) as socket:
        socket.send_text("hello")
        garbled, garbled_code = errors_of(socket)
    with lexicon_client.websocket_connect("/v1/listen", headers=KEY) as socket:
        socket.send_bytes(pcm16(speechlike(0.5)))
        idle, idle_code = errors_of(socket)  # nothing more for live_idle_seconds (1 s)
    with lexicon_client.websocket_connect("/v1/listen", headers=KEY) as socket:
        for _ in range(31):
            socket.send_bytes(bytes(2 * RATE))  # a second of silence each, past the 30 s limit
        long, long_code = errors_of(socket)
    assert (garbled["variant"], garbled_code) == ("invalid_message", 1003)
    assert garbled["description"].startswith('text messages must be JSON: {"type": "KeepAlive"}')
    assert (idle["variant"], idle["description"], idle_code) == ("idle", "no audio or KeepAlive for 1 s", 1008)
    assert (long["variant"], long["description"], long_code) == (
        "too_long",
        "the stream passed the limit of 30 s of audio",
        1008,
    )
    with lexicon_client.websocket_connect("/v1/listen", headers=KEY) as socket:
        socket.send_text(json.dumps({"type": "KeepAlive"}))
        *results, metadata = stream(socket, pcm16(speechlike(1.0)), piece_bytes=8_000)
    assert metadata["duration"] == pytest.approx(1.0)
    assert "qasr_live_streams 0.0" in lexicon_client.get("/metrics").text


@pytest.mark.parametrize("seconds", [0.0, 0.05])
def test_a_stream_with_no_audio_or_under_100_ms_ends_with_metadata_and_no_words(lexicon_client, seconds):
    with lexicon_client.websocket_connect("/v1/listen", headers=KEY) as socket:
        *results, metadata = stream(socket, pcm16(speechlike(seconds)), piece_bytes=3_200)
    assert metadata["duration"] == pytest.approx(seconds)
    assert all(m["is_final"] and m["channel"]["alternatives"][0]["words"] == [] for m in results)


def test_streams_past_the_limit_are_refused_until_one_closes(quartznet_nemo, tmp_path):
    settings = settings_for(quartznet_nemo, tmp_path, live_max_streams=1)
    with TestClient(create_app(settings, exit_on_failure=False)) as client:
        wait_ready(client)
        with client.websocket_connect("/v1/listen") as first:
            with pytest.raises(WebSocketDenialResponse) as refused:
                client.websocket_connect("/v1/listen").__enter__()
            assert refused.value.status_code == 503
            assert refused.value.json()["error"]["message"] == "1 live streams are open: the limit"
            stream(first, pcm16(speechlike(0.5)), piece_bytes=16_000)
        with client.websocket_connect("/v1/listen") as second:
            *_, metadata = stream(second, pcm16(speechlike(0.5)), piece_bytes=16_000)
    assert metadata["duration"] == pytest.approx(0.5)


@pytest.mark.slow
def test_a_real_server_streams_over_the_wire_and_refuses_a_wrong_key_with_its_status(quartznet_nemo, tmp_path):
    """`qasr serve` (uvicorn with the websockets protocol): a stream from the websockets client,
    and a wrong key answered with HTTP 401 and the JSON error during the handshake."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    server, http_url = served(quartznet_nemo, tmp_path, {"QASR_API_KEY": "sesame"}, stderr=subprocess.DEVNULL)
    try:
        url = http_url.replace("http://", "ws://") + "/v1/listen?sample_rate=16000"
        with connect(url, additional_headers={"Authorization": "Token sesame"}) as stream_socket:
            for start in range(0, 3 * RATE * 2, 6_400):
                stream_socket.send(pcm16(speechlike(3.0, seed=1))[start : start + 6_400])
            stream_socket.send(json.dumps({"type": "CloseStream"}))
            messages = [json.loads(message) for message in stream_socket]  # until the service closes
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers={"Authorization": "Token wrong"}).close()
    finally:
        server.terminate()
        server.wait(30)
    assert messages[-1]["type"] == "Metadata" and messages[-1]["duration"] == pytest.approx(3.0)
    assert all(m["type"] == "Results" and m["is_final"] for m in messages[:-1])
    response = refused.value.response
    assert response.status_code == 401 and json.loads(response.body)["error"]["type"] == "authentication_error"


def test_a_handshake_before_the_model_is_ready_is_refused_with_503(quartznet_nemo, tmp_path, monkeypatch):
    release = threading.Event()
    real_prepare = app.api.prepare_model
    monkeypatch.setattr(app.api, "prepare_model", lambda *args: release.wait(30) and real_prepare(*args))
    with TestClient(create_app(settings_for(quartznet_nemo, tmp_path), exit_on_failure=False)) as client:
        with pytest.raises(WebSocketDenialResponse) as refused:
            client.websocket_connect("/v1/listen").__enter__()
        release.set()
        wait_ready(client)
    assert refused.value.status_code == 503
    assert refused.value.json()["error"]["message"] == "the model is not ready (starting)"


def test_a_failure_inside_ends_only_that_stream_with_an_internal_error(lexicon_client, monkeypatch):
    engine = lexicon_client.app.state.service.engine

    def broken(windows, batch_id=0):
        raise RuntimeError("inference broke")

    with monkeypatch.context() as patch:
        patch.setattr(engine, "run", broken)
        with lexicon_client.websocket_connect("/v1/listen", headers=KEY) as socket:
            socket.send_bytes(pcm16(speechlike(6.0)))
            error, code = errors_of(socket)
    assert (error["variant"], code) == ("server_error", 1011)
    assert error["description"] == "internal error; quote the request id when reporting it"
    with lexicon_client.websocket_connect("/v1/listen", headers=KEY) as socket:
        *_, metadata = stream(socket, pcm16(speechlike(1.0)), piece_bytes=8_000)
    assert metadata["duration"] == pytest.approx(1.0)
