"""Small NeMo checkpoints built once per session: NeMo models trained for seconds on a toy task."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml

from quantizer.nemo_configs import build_nemo_model, jasperdr_config, quartznet_config
from tests.toy_speech import train_toy_model

FEATURES = 16  # mel bins of the small test models
TOY_TRAINING_STEPS = 400  # ~7 s each; CTC loss falls from ~30 to ~1


def small_quartznet_config() -> dict:
    return quartznet_config(
        groups=(16, 24),
        kernels=(5, 7),
        blocks_per_group=1,
        repeat=3,
        prologue=(16, 7),
        epilogue=(24, 9, 32),
        features=FEATURES,
    )


def small_jasperdr_config() -> dict:
    return jasperdr_config(
        groups=(16, 24),
        kernels=(5, 7),
        blocks_per_group=2,
        repeat=2,
        prologue=(16, 5),
        epilogue=(24, 7, 32),
        features=FEATURES,
    )


def trained_nemo(config: dict, path: Path, seed: int) -> Path:
    model, _ = train_toy_model(
        build_nemo_model(config, seed=seed, realistic_batch_norm=False), steps=TOY_TRAINING_STEPS, seed=seed
    )
    model.save_to(str(path))
    return path


@pytest.fixture(scope="session")
def quartznet_nemo(tmp_path_factory) -> Path:
    return trained_nemo(small_quartznet_config(), tmp_path_factory.mktemp("qn") / "quartznet.nemo", seed=1)


@pytest.fixture(scope="session")
def jasperdr_nemo(tmp_path_factory) -> Path:
    return trained_nemo(small_jasperdr_config(), tmp_path_factory.mktemp("jdr") / "jasperdr.nemo", seed=2)


def rewrite_nemo(source: Path, target: Path, edit_config=None, drop: str | None = None) -> Path:
    """Copy a .nemo archive, editing its config (a function of the dict) or dropping a member."""
    with tarfile.open(source) as archive, tarfile.open(target, "w") as out:
        for info in archive.getmembers():
            if not info.isfile() or (drop and info.name.endswith(drop)):
                continue
            data = archive.extractfile(info).read()
            if info.name.endswith("model_config.yaml") and edit_config is not None:
                config = yaml.safe_load(data)
                edit_config(config)
                data = yaml.safe_dump(config).encode()
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return target
