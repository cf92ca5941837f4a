"""The startup job's model: a quantized folder in the cache, keyed by checkpoint hash and settings.

A cache entry is built in a scratch folder and renamed into place, so a crash never leaves a half
entry under the final name; `complete.json` lists every file's SHA-256 and an entry whose files do
not match is rebuilt. An unwritable cache folder is not fatal: the model is quantized into a
temporary folder and the service warns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from quantizer.checkpoint import file_sha256, read_nemo
from quantizer.cpu import int8_weight_type
from quantizer.graph import build_float_graph
from quantizer.integer_model import FORMAT_NAME, FORMAT_VERSION
from quantizer.onnx_export import BACKEND_FILES, write_backends
from quantizer.pipeline import CalibrationSettings, quantize_checkpoint
from quantizer.synthetic import SyntheticSettings

COMPLETE_FILE = "complete.json"
REPORT_FILE = "report.json"

log = logging.getLogger("qasr.model_store")


@dataclass
class PreparedModel:
    folder: Path
    checkpoint_sha256: str
    from_cache: bool
    quantize_seconds: float  # 0 when reused from the cache
    report: dict


def check_checkpoint(path: Path) -> None:
    """Fail fast (CheckpointError naming the file) on a missing or unreadable checkpoint."""
    build_float_graph(read_nemo(path))


def cache_key(checkpoint_sha256: str, synthetic: SyntheticSettings) -> str:
    identity = {
        "checkpoint": checkpoint_sha256,
        "format": [FORMAT_NAME, FORMAT_VERSION],
        "backends": sorted(BACKEND_FILES),  # an entry made before a backend existed lacks its graph
        "synthetic": dataclasses.asdict(synthetic),
        "calibration": dataclasses.asdict(CalibrationSettings()),  # the service always uses the defaults
        "int8_weights": int8_weight_type(),  # a folder moved to another kind of CPU is rebuilt for it
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def is_complete(folder: Path) -> bool:
    """Every file named in complete.json exists with its recorded hash."""
    try:
        expected = json.loads((folder / COMPLETE_FILE).read_text())["files"]
        return bool(expected) and all(file_sha256(folder / name) == digest for name, digest in expected.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def quantize_into(folder: Path, checkpoint: Path, synthetic: SyntheticSettings) -> dict:
    """Quantize and export every backend into folder, then seal it with complete.json."""
    model, report, graph = quantize_checkpoint(checkpoint, synthetic, progress=True)
    model.save(folder)
    report["int8_weights"] = int8_weight_type()
    report["onnx_bytes"] = write_backends(folder, model, graph, report["int8_weights"])
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=1))
    files = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / COMPLETE_FILE).write_text(json.dumps({"files": files}, indent=1))
    return report


def prepare_model(checkpoint: Path, cache_dir: Path, synthetic: SyntheticSettings) -> PreparedModel:
    """The cached quantized folder for this checkpoint and settings, building it when needed."""
    digest = file_sha256(checkpoint)
    final = cache_dir / cache_key(digest, synthetic)
    if is_complete(final):
        log.info("using cached quantized model %s", final)
        return PreparedModel(final, digest, True, 0.0, json.loads((final / REPORT_FILE).read_text()))
    if final.exists():
        log.warning("cache entry %s is incomplete or corrupt: rebuilding it", final)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = cache_dir / f".building-{uuid.uuid4().hex}"
        scratch.mkdir()
    except OSError as error:
        log.warning(
            "cache folder %s is not writable (%s): quantizing into a temporary folder; "
            "the next start will quantize again",
            cache_dir,
            error,
        )
        scratch = Path(tempfile.mkdtemp(prefix="qasr-model-"))
        final = None
    log.info("quantizing %s zero-shot (no data): %s", checkpoint, dataclasses.asdict(synthetic))
    start = time.perf_counter()
    try:
        report = quantize_into(scratch, checkpoint, synthetic)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    log.info("quantized in %.1f s", seconds)
    if final is None:
        return PreparedModel(scratch, digest, False, seconds, report)
    shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(scratch, final)
    except OSError:  # another process sealed the same entry first
        shutil.rmtree(scratch, ignore_errors=True)
    return PreparedModel(final, digest, False, seconds, report)
