"""Faults: bad model files stop startup with a clear message; SIGTERM drains in-flight requests."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.cli import main
from tests.processes import served
from tests.test_service import encode, speechlike


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda folder: folder / "missing.nemo", "no such file"),
        (lambda folder: _write(folder / "text.nemo", b"not a tar archive"), "not a readable .nemo archive"),
        (lambda folder: folder, "not a file"),
    ],
)
def test_a_missing_or_corrupt_model_stops_serve_with_a_message_naming_it(tmp_path, capsys, make, phrase):
    path = make(tmp_path)
    assert main(["serve", "--model", str(path), "--cache-dir", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and phrase in error


def test_a_truncated_model_stops_serve(tmp_path, quartznet_nemo, capsys):
    truncated = _write(tmp_path / "cut.nemo", quartznet_nemo.read_bytes()[:5000])
    assert main(["serve", "--model", str(truncated)]) == 2
    assert str(truncated) in capsys.readouterr().err


def test_a_bad_pad_shapes_setting_stops_serve_naming_the_variable(tmp_path, quartznet_nemo, capsys, monkeypatch):
    monkeypatch.setenv("QASR_PAD_SHAPES", "sometimes")
    assert main(["serve", "--model", str(quartznet_nemo), "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "QASR_PAD_SHAPES='sometimes': choose one of auto, on, off" in capsys.readouterr().err


def test_a_negative_search_worker_count_stops_serve_naming_the_setting(tmp_path, quartznet_nemo, capsys, monkeypatch):
    monkeypatch.setenv("QASR_SEARCH_WORKERS", "-1")
    assert main(["serve", "--model", str(quartznet_nemo), "--cache-dir", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err
    assert "search_workers" in error and "greater than or equal to 0" in error


def test_an_unknown_decoder_stops_serve_naming_the_variable(tmp_path, quartznet_nemo, capsys):
    arguments = ["serve", "--model", str(quartznet_nemo), "--cache-dir", str(tmp_path / "cache"), "--decoder", "beam"]
    assert main(arguments) == 2
    assert "QASR_DECODER='beam': choose one of auto, greedy, lexicon" in capsys.readouterr().err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_sigterm_finishes_in_flight_requests_then_exits(quartznet_nemo, tmp_path):
    waiting = {
        "QASR_MAX_BATCH_SIZE": "64",
        "QASR_MAX_BATCH_WAIT_MS": "3000",  # a request waits 3 s for its batch: in flight when SIGTERM comes
    }
    server, url = served(quartznet_nemo, tmp_path, waiting, stderr=subprocess.PIPE, text=True)
    try:
        responses = []
        clip = encode(speechlike(2.0))
        request = threading.Thread(
            target=lambda: responses.append(httpx.post(f"{url}/v1/transcribe", content=clip, timeout=30))
        )
        request.start()
        time.sleep(1.0)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:
            refused = httpx.get(f"{url}/health/ready", timeout=1).status_code != 200
        except httpx.HTTPError:
            refused = True
        request.join(30)
        # uvicorn re-raises the captured signal once it has shut down gracefully
        assert server.wait(30) in (0, -signal.SIGTERM)
    finally:
        server.kill()
    assert refused, "still ready after SIGTERM"
    assert [r.status_code for r in responses] == [200]
    assert "draining" in server.stderr.read()


def test_a_missing_language_model_stops_serve_naming_the_variable(tmp_path, quartznet_nemo, capsys, monkeypatch):
    monkeypatch.setenv("QASR_LANGUAGE_MODEL", str(tmp_path / "gone.arpa"))
    arguments = ["serve", "--model", str(quartznet_nemo), "--cache-dir", str(tmp_path / "cache")]
    assert main([*arguments, "--decoder", "lexicon"]) == 2
    assert f"QASR_LANGUAGE_MODEL='{tmp_path / 'gone.arpa'}': no such file" in capsys.readouterr().err
