import pytest

from quantizer.checkpoint import CheckpointError, UnsupportedModelError, read_nemo
from quantizer.graph import build_float_graph
from tests.conftest import rewrite_nemo


def test_reads_config_and_weights(quartznet_nemo):
    checkpoint = read_nemo(quartznet_nemo)
    assert checkpoint.config["encoder"]["feat_in"] == 16
    assert "decoder.decoder_layers.0.weight" in checkpoint.state
    assert len(checkpoint.sha256) == 64


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_nemo(tmp_path / "absent.nemo")


def test_random_bytes_are_not_an_archive(tmp_path):
    path = tmp_path / "noise.nemo"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="not a readable .nemo archive"):
        read_nemo(path)


def test_truncated_archive(quartznet_nemo, tmp_path):
    path = tmp_path / "truncated.nemo"
    data = quartznet_nemo.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.nemo"):
        read_nemo(path)


def test_archive_without_weights(quartznet_nemo, tmp_path):
    path = rewrite_nemo(quartznet_nemo, tmp_path / "noweights.nemo", drop="model_weights.ckpt")
    with pytest.raises(CheckpointError, match="no 'model_weights.ckpt'"):
        read_nemo(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["encoder"]["jasper"][1].update(se=True), "SqueezeExcite"),
        (lambda c: c.update(target="nemo.collections.asr.models.EncDecCTCModelBPE"), "EncDecCTCModelBPE"),
        (lambda c: c["decoder"].update(_target_="nemo.collections.asr.modules.RNNTDecoder"), "RNNTDecoder"),
        (lambda c: c["encoder"].update(_target_="nemo.collections.asr.modules.ConformerEncoder"), "ConformerEncoder"),
        (lambda c: c["encoder"].update(activation="selu"), "activation 'selu'"),
        (lambda c: c["encoder"]["jasper"][1].update(groups=2), "grouped"),
    ],
)
def test_unsupported_architectures_are_named(quartznet_nemo, tmp_path, edit, message):
    path = rewrite_nemo(quartznet_nemo, tmp_path / "edited.nemo", edit_config=edit)
    with pytest.raises(UnsupportedModelError, match=message):
        build_float_graph(read_nemo(path))


def test_weights_that_do_not_match_the_config(quartznet_nemo, tmp_path):
    def add_repeat(config):
        config["encoder"]["jasper"][1]["repeat"] += 1

    path = rewrite_nemo(quartznet_nemo, tmp_path / "mismatch.nemo", edit_config=add_repeat)
    with pytest.raises(UnsupportedModelError, match="has no weight"):
        build_float_graph(read_nemo(path))
