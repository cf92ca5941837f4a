"""`qasr serve` starts the service and `qasr transcribe` runs its pipeline on files; every other
`qasr` command is the quantizer's."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from app import formats
from app.decoding import transcript
from app.model_store import check_checkpoint
from app.offline import FileTranscript, OfflineTranscriber
from app.settings import Settings
from quantizer import cli as quantizer_cli
from quantizer.checkpoint import CheckpointError, UnsupportedModelError


def with_two_malloc_arenas(argv: list[str]) -> None:
    """Re-run this command with MALLOC_ARENA_MAX=2 unless it is set. glibc gives every allocating
    thread its own arena, and with the decode and inference threads a server's memory then creeps up
    under load (measured over one minute at concurrency 16: +20 %, and +4 % with two arenas)."""
    if "MALLOC_ARENA_MAX" not in os.environ:
        os.environ["MALLOC_ARENA_MAX"] = "2"
        os.execv(sys.executable, [sys.executable, "-m", "app.cli", "serve", *argv])


TRANSCRIPT_FORMATS = ("text", "json", "srt", "vtt")
MODEL_FLAGS = {
    "model": "model_path",
    "backend": "backend",
    "device": "device",
    "decoder": "decoder",
    "cache_dir": "cache_dir",
}


def model_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the flags that choose and run the model, shared by `serve` and `transcribe`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"{description} The model options also read QASR_* variables (see the README); flags win.",
    )
    parser.add_argument("--model", type=Path, help="a .nemo checkpoint (QASR_MODEL_PATH; default: the shipped one)")
    parser.add_argument("--backend", help="QASR_BACKEND: integer-float (default), integer, int8, qdq or fp32")
    parser.add_argument("--device", help="QASR_DEVICE: auto (default), cpu, cuda or tensorrt")
    parser.add_argument("--decoder", help="QASR_DECODER: auto (default), greedy or lexicon")
    parser.add_argument("--cache-dir", type=Path, help="QASR_CACHE_DIR")
    return parser


def checked_settings(prog: str, args: argparse.Namespace, flags: dict[str, str]) -> Settings | None:
    """Settings from the environment with the given flags (argparse name -> setting) over them;
    None, after saying why on stderr, if they or the checkpoint cannot be used."""
    overrides = {setting: getattr(args, flag) for flag, setting in flags.items() if getattr(args, flag) is not None}
    try:
        settings = Settings(**overrides)
        settings.check()
        check_checkpoint(settings.model_path)
    except (CheckpointError, UnsupportedModelError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return None
    return settings


def serve(argv: list[str]) -> int:
    parser = model_parser("qasr serve", "Serve a .nemo model over HTTP.")
    parser.add_argument("--host", help="QASR_HOST (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="QASR_PORT (default 8000)")
    args = parser.parse_args(argv)
    settings = checked_settings("qasr serve", args, MODEL_FLAGS | {"host": "host", "port": "port"})
    if settings is None:
        return 2

    import uvicorn

    from app.api import create_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)

    class DrainingServer(uvicorn.Server):
        """On SIGTERM/SIGINT readiness turns false at once; uvicorn then lets in-flight requests finish."""

        def handle_exit(self, sig, frame):
            logging.getLogger("qasr.serve").warning("signal %s: draining, readiness is now false", sig)
            app.state.service.phase = "draining"
            app.state.service.metrics.ready.set(0)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.request_timeout_s),
    )
    DrainingServer(config).run()
    return 0


def transcribe(argv: list[str]) -> int:
    parser = model_parser(
        "qasr transcribe",
        "Transcribe audio files on this machine with the service's pipeline, cache and settings; no server.",
    )
    parser.add_argument(
        "files", nargs="+", type=Path, help="audio files (WAV, FLAC, OGG/Opus, MP3, M4A, WebM, ...); - reads stdin"
    )
    parser.add_argument(
        "--hotwords", action="append", default=[], help='lexicon words to favour, "in quotes" a phrase (repeatable)'
    )
    parser.add_argument(
        "--format", choices=TRANSCRIPT_FORMATS, default="text", help="text (default), json (a line per file), srt, vtt"
    )
    parser.add_argument(
        "--search-workers",
        type=int,
        help="QASR_SEARCH_WORKERS: lexicon searches side by side in this many processes (default 0: one "
        "per core when there are several files; 1: in this process)",
    )
    args = parser.parse_args(argv)
    if args.format in ("srt", "vtt") and len(args.files) > 1:
        parser.error(f"--format {args.format} takes one file")
    settings = checked_settings("qasr transcribe", args, MODEL_FLAGS | {"search_workers": "search_workers"})
    if settings is None:
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        # ValueError: a vocabulary or QASR_HOTWORDS it cannot take
        transcriber = OfflineTranscriber(settings, files=len(args.files))
    except ValueError as error:
        print(f"qasr transcribe: error: {error}", file=sys.stderr)
        return 2
    try:
        hotwords = transcriber.engine.hotwords(args.hotwords)
    except ValueError as error:
        print(f"qasr transcribe: error: {error}", file=sys.stderr)
        transcriber.close()
        return 2
    failed = 0
    try:
        for path, result in transcriber.transcripts(args.files, read_file, hotwords):
            if isinstance(result, FileTranscript):
                print(formatted(result, path, args.format, several=len(args.files) > 1), flush=True)
            else:
                print(f"qasr transcribe: {path}: {result}", file=sys.stderr)
                failed += 1
    finally:
        transcriber.close()
    return 1 if failed else 0


def read_file(path: Path) -> bytes:
    """A file's bytes; `-` is stdin."""
    return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()


def formatted(result: FileTranscript, path: Path, format: str, several: bool) -> str:
    """One file's transcript as `qasr transcribe` prints it."""
    text = transcript(result.words)
    if format == "json":
        body = {"file": str(path), "text": text, "words": formats.word_bodies(result.words)}
        return json.dumps(body | {"duration": round(result.duration, 3)})
    if format == "srt":
        return formats.srt(result.words)
    if format == "vtt":
        return formats.vtt(result.words)
    return f"{path}\t{text}" if several else text


def main(argv: list[str] | None = None) -> int:
    """argv None: the real command line (only then may `serve` re-run the process)."""
    if argv is None:
        argv = sys.argv[1:]
        if argv[:1] == ["serve"]:
            with_two_malloc_arenas(argv[1:])
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    if argv[:1] == ["transcribe"]:
        return transcribe(argv[1:])
    return quantizer_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
