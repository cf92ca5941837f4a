import numpy as np
import pytest
import torch

from quantizer.checkpoint import read_nemo
from quantizer.graph import BN_EPS, FloatModel, build_float_graph, fold_batch_norm
from quantizer.nemo_configs import build_nemo_model
from tests.conftest import small_jasperdr_config, small_quartznet_config


def test_fold_batch_norm_matches_conv_then_bn():
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv1d(6, 5, 3, padding=1, bias=True).double()
    bn = torch.nn.BatchNorm1d(5, eps=BN_EPS).double().eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(5, generator=generator, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(5, generator=generator, dtype=torch.float64) + 0.1)
        bn.weight.copy_(torch.randn(5, generator=generator, dtype=torch.float64))
        bn.bias.copy_(torch.randn(5, generator=generator, dtype=torch.float64))
    weight, bias, _, _ = fold_batch_norm(
        conv.weight.detach().numpy(),
        conv.bias.detach().numpy(),
        *(t.detach().numpy() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)),
    )
    x = torch.randn(2, 6, 20, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        expected = bn(conv(x))
        folded = torch.nn.functional.conv1d(
            x, torch.from_numpy(weight).double(), torch.from_numpy(bias).double(), padding=1
        )
    assert torch.allclose(expected, folded, atol=1e-5)


@pytest.mark.parametrize("config", [small_quartznet_config, small_jasperdr_config], ids=["quartznet", "jasperdr"])
def test_float_graph_matches_nemo_on_a_padded_batch(config, tmp_path):
    model = build_nemo_model(config(), seed=3)
    model.save_to(str(tmp_path / "m.nemo"))
    graph = build_float_graph(read_nemo(tmp_path / "m.nemo"))
    features = torch.randn(3, 16, 61, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([61, 44, 17])
    with torch.no_grad():
        expected, expected_lengths, _ = model.forward(processed_signal=features, processed_signal_length=lengths)
        logits, out_lengths = FloatModel(graph)(features, lengths)
    log_probs = torch.log_softmax(logits, dim=1).transpose(1, 2)
    assert torch.equal(out_lengths, expected_lengths)
    for b, n in enumerate(out_lengths.tolist()):
        assert (log_probs[b, :n] - expected[b, :n]).abs().max().item() < 1e-4


def test_padded_utterance_equals_running_it_alone(quartznet_nemo):
    model = FloatModel(build_float_graph(read_nemo(quartznet_nemo)))
    features = torch.randn(2, 16, 50, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batch, lengths = model(features, torch.tensor([50, 31]))
        alone, alone_lengths = model(features[1:, :, :31], torch.tensor([31]))
    n = int(lengths[1])
    assert n == int(alone_lengths[0]) == 16
    assert torch.allclose(batch[1, :, :n], alone[0, :, :n], atol=1e-5)


def test_graph_shape_of_quartznet_and_dense_residual_panes(quartznet_nemo, jasperdr_nemo):
    quartznet = build_float_graph(read_nemo(quartznet_nemo))
    # prologue (2 nodes) + 2 blocks x 3 repeats x (depthwise, pointwise) + epilogue (2 + 1 nodes) + decoder
    assert len(quartznet.nodes) == 2 + 12 + 3 + 1
    assert max(len(n.terms) for n in quartznet.nodes) == 2
    jasperdr = build_float_graph(read_nemo(jasperdr_nemo))
    block_ends = [n for n in jasperdr.nodes if len(n.terms) > 1]
    assert [len(n.terms) for n in block_ends] == [2, 3, 4, 5]  # one residual pane per earlier dense input
    assert all(np.isfinite(t.weight).all() for n in jasperdr.nodes for t in n.terms)
