"""Read a NeMo `.nemo` archive (a tar of `model_config.yaml` and `model_weights.ckpt`).

Only the two members are read, into memory: nothing from the archive is written to disk,
so member names can never escape a folder.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_MEMBER = "model_config.yaml"
WEIGHTS_MEMBER = "model_weights.ckpt"


class CheckpointError(ValueError):
    """The file is not a readable `.nemo` checkpoint."""


class UnsupportedModelError(ValueError):
    """The checkpoint is readable but its architecture is not supported."""


@dataclass
class NemoCheckpoint:
    path: Path
    sha256: str
    config: dict
    state: dict[str, torch.Tensor]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _member(archive: tarfile.TarFile, name: str, path: Path) -> bytes:
    for info in archive.getmembers():
        if info.isfile() and Path(info.name).name == name and Path(info.name).parent in (Path("."), Path("")):
            stream = archive.extractfile(info)
            if stream is not None:
                return stream.read()
    raise CheckpointError(f"{path}: not a NeMo checkpoint: the archive has no '{name}'")


def read_nemo(path: str | Path) -> NemoCheckpoint:
    """Read the config and the state dict of a `.nemo` file, with clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        with tarfile.open(path, mode="r:*") as archive:
            config_bytes = _member(archive, CONFIG_MEMBER, path)
            weights_bytes = _member(archive, WEIGHTS_MEMBER, path)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable .nemo archive (a tar file): {error}") from error
    try:
        config = OmegaConf.to_container(OmegaConf.create(config_bytes.decode("utf-8")), resolve=True)
    except (OmegaConfBaseException, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path}: {CONFIG_MEMBER} is not valid YAML: {error}") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: {CONFIG_MEMBER} is not a mapping")
    try:
        state = torch.load(io.BytesIO(weights_bytes), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many unrelated types for corrupt pickles
        raise CheckpointError(f"{path}: {WEIGHTS_MEMBER} is not a readable PyTorch state dict: {error}") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: {WEIGHTS_MEMBER} holds no state dict")
    return NemoCheckpoint(path=path, sha256=file_sha256(path), config=config, state=state)
