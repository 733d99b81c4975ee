"""PatchGAN and StyleGAN2 discriminators: reference sizes, initialisation, known answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter, ValidationError
from torch import nn

from vq.tokenizers.discriminators import (
    DiscriminatorConfig,
    PatchGANConfig,
    PatchGANDiscriminator,
    StyleGAN2Discriminator,
    StyleGAN2DiscriminatorConfig,
    build_discriminator,
)
from vq.tokenizers.discriminators.stylegan2 import (
    Blur,
    ConvLayer,
    EqualConv2d,
    fused_bias_leaky_relu,
    minibatch_stddev,
)

SMALL_CHANNELS = {4: 16, 8: 16, 16: 8, 32: 8}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("depth", "reference"), [(2, 0.66e6), (3, 2.77e6)])
def test_patchgan_parameter_counts(depth, reference):
    count = n_params(PatchGANDiscriminator(PatchGANConfig(depth=depth)))
    assert abs(count - reference) / reference < 0.01


@pytest.mark.parametrize(("depth", "side"), [(2, 14), (3, 6)])
def test_patchgan_logit_map_size(depth, side):
    # Each stride-2 conv (k4, p1) halves the side; each of the two stride-1 convs removes 1.
    d = PatchGANDiscriminator(PatchGANConfig(depth=depth, width=8))
    assert d(torch.randn(2, 3, 64, 64)).shape == (2, 1, side, side)
    assert 64 // 2**depth - 2 == side


def test_patchgan_structure_and_initialisation():
    torch.manual_seed(0)
    d = PatchGANDiscriminator(PatchGANConfig(depth=3))
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    # Convs followed by BatchNorm carry no bias.
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    bn_weights = torch.cat([n.weight for n in norms])
    assert bn_weights.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn_weights.std().item() == pytest.approx(0.02, rel=0.2)
    assert all((n.bias == 0).all() for n in norms)


def test_fused_bias_leaky_relu_known_values():
    x = torch.tensor([[-1.0, 2.0]]).view(1, 2, 1, 1)
    bias = torch.tensor([0.5, -1.0])
    out = fused_bias_leaky_relu(x, bias).flatten()
    torch.testing.assert_close(out, torch.tensor([-0.5 * 0.2, 1.0]) * math.sqrt(2.0))


def test_equalised_conv_scales_unit_weights_by_fan_in():
    torch.manual_seed(0)
    conv = EqualConv2d(8, 4, 3, padding=1)
    assert conv.weight.std().item() == pytest.approx(1.0, abs=0.15)
    x = torch.randn(1, 8, 5, 5)
    expected = F.conv2d(x, conv.weight / math.sqrt(8 * 9), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)


def test_blur_is_normalised_binomial_filter():
    blur = Blur(2, (1, 1))
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    torch.testing.assert_close(blur.kernel[0, 0], torch.outer(k, k) / 64)
    # A constant image stays constant away from the zero padding.
    out = blur(torch.full((1, 2, 6, 6), 3.0))
    assert out.shape == (1, 2, 5, 5)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.full((1, 2, 3, 3), 3.0))


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_downsampling_conv_halves_the_resolution(kernel_size):
    layer = ConvLayer(4, 6, kernel_size, downsample=True)
    assert layer(torch.randn(2, 4, 16, 16)).shape == (2, 6, 8, 8)


def test_minibatch_stddev_known_answer():
    # B = 8, group 4: samples i and j share a group when i = j (mod 2).
    x = torch.zeros(8, 2, 1, 1)
    x[0::2, 0, 0, 0] = torch.tensor([1.0, 3.0, 5.0, 7.0])  # population std sqrt(5)
    x[0::2, 1, 0, 0] = torch.tensor([2.0, 2.0, 2.0, 2.0])  # std 0
    x[1::2, :, 0, 0] = 4.0  # the other group is constant
    out = minibatch_stddev(x, group_size=4, eps=0.0)
    assert out.shape == (8, 3, 1, 1)
    torch.testing.assert_close(out[:, :2], x)
    expected = torch.tensor([math.sqrt(5.0) / 2, 0.0] * 4)
    torch.testing.assert_close(out[:, 2].flatten(), expected)
    # A batch smaller than the group is one group; a non-multiple is an error.
    assert minibatch_stddev(torch.randn(3, 2, 2, 2)).shape == (3, 3, 2, 2)
    with pytest.raises(ValueError, match="multiple"):
        minibatch_stddev(torch.randn(6, 2, 2, 2))


def test_stylegan2_forward_at_32px_with_small_channels():
    torch.manual_seed(0)
    config = StyleGAN2DiscriminatorConfig(image_size=32, channels=SMALL_CHANNELS)
    d = StyleGAN2Discriminator(config)
    assert len(d.blocks) == 3  # 32 -> 16 -> 8 -> 4
    image = torch.randn(4, 3, 32, 32, requires_grad=True)
    logits = d(image)
    assert logits.shape == (4, 1)
    logits.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.parameters())
    with pytest.raises(ValueError, match="expected 32 px"):
        d(torch.randn(4, 3, 64, 64))


def test_stylegan2_default_channel_map_at_256px():
    d = StyleGAN2Discriminator(StyleGAN2DiscriminatorConfig())
    assert d.from_rgb.conv.weight.shape == (128, 3, 1, 1)
    assert len(d.blocks) == 6
    assert [b.conv2.conv.weight.shape[0] for b in d.blocks] == [256, 512, 512, 512, 512, 512]
    assert d.final_conv.conv.weight.shape == (512, 513, 3, 3)


def test_stylegan2_config_checks_resolutions():
    with pytest.raises(ValidationError, match="power of two"):
        StyleGAN2DiscriminatorConfig(image_size=48)
    with pytest.raises(ValidationError, match=r"no entry for resolutions \[32\]"):
        StyleGAN2DiscriminatorConfig(image_size=32, channels={4: 8, 8: 8, 16: 8})


def test_discriminator_config_union_picks_by_kind():
    adapter = TypeAdapter(DiscriminatorConfig)
    patch = adapter.validate_python({"kind": "patchgan", "depth": 2, "width": 8})
    style = adapter.validate_python(
        {"kind": "stylegan2", "image_size": 32, "channels": SMALL_CHANNELS}
    )
    assert isinstance(build_discriminator(patch), PatchGANDiscriminator)
    assert isinstance(build_discriminator(style), StyleGAN2Discriminator)
