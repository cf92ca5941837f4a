import pytest
import torch

from quantizer.fft_conv import depthwise_conv1d_fft, is_depthwise


@pytest.mark.parametrize(
    ("kernel", "padding", "dilation", "bias"),
    [(33, 16, 1, False), (75, 37, 1, True), (9, 8, 2, False), (5, 0, 1, True)],
)
def test_fft_depthwise_convolution_matches_conv1d_and_its_gradients(kernel, padding, dilation, bias):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 1, kernel, generator=generator, requires_grad=True)
    shift = torch.randn(6, generator=generator, requires_grad=True) if bias else None
    x = torch.randn(3, 6, 50, generator=generator, requires_grad=True)
    expected = torch.nn.functional.conv1d(x, weight, shift, padding=padding, dilation=dilation, groups=6)
    got = depthwise_conv1d_fft(x, weight, shift, padding, dilation)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    upstream = torch.randn(expected.shape, generator=generator)
    leaves = [x, weight] + ([shift] if bias else [])
    for e, g in zip(
        torch.autograd.grad(expected, leaves, upstream), torch.autograd.grad(got, leaves, upstream), strict=True
    ):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


def test_only_stride_one_per_channel_filters_count_as_depthwise():
    assert is_depthwise(torch.zeros(8, 1, 33), groups=8, stride=1)
    assert not is_depthwise(torch.zeros(8, 1, 33), groups=8, stride=2)  # QuartzNet's prologue
    assert not is_depthwise(torch.zeros(8, 8, 1), groups=1, stride=1)  # pointwise
    assert not is_depthwise(torch.zeros(8, 2, 5), groups=4, stride=1)  # grouped, not depthwise
    assert not is_depthwise(torch.zeros(8, 1, 1), groups=8, stride=1)  # one tap: a per-channel scale
