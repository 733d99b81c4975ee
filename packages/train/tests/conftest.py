"""Fixtures shared by the tests of vq-train."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vq.tokenizers.losses.vgg16 import TAP_CHANNELS, VGG16Features


@pytest.fixture
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and two threads on a shared
    two-core machine are several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_inception(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random FID-Inception state dict, saved once per session, whose features are not
    degenerate (no pretrained weights can be downloaded here).

    torchvision's Inception3 with 1008 classes has the key layout of the published FID
    weights. Kaiming-normal convolutions keep activations O(1) through 94 layers (the default
    init of a fresh module collapses them), and a larger fc spreads the logits so that the
    Inception Score differs from 1.
    """
    import torchvision

    with torch.random.fork_rng():  # the same weights whichever test runs first
        torch.manual_seed(0)
        net = torchvision.models.inception_v3(
            weights=None, aux_logits=False, init_weights=False, num_classes=1008
        )
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    with torch.no_grad():
        net.fc.weight.mul_(50.0)
    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory) -> dict[str, Path]:
    """Random VGG16 trunk + LPIPS heads saved in the layout of the real files."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("lpips")
    trunk = VGG16Features()
    for name, buffer in trunk.named_buffers():
        if name.endswith("weight"):
            torch.nn.init.kaiming_normal_(buffer, mode="fan_out", nonlinearity="relu")
        else:
            buffer.normal_(0.0, 0.1)
    torch.save(dict(trunk.named_buffers()), folder / "vgg16.pth")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(TAP_CHANNELS)}
    torch.save(heads, folder / "vgg_lin.pth")
    return {"vgg_path": folder / "vgg16.pth", "lin_path": folder / "vgg_lin.pth"}
