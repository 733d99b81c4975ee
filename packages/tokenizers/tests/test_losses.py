"""LPIPS, GAN losses, R1 and the adaptive generator weight against independent computations."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vq.core.errors import UserError
from vq.tokenizers.losses import (
    LPIPS,
    LPIPSConfig,
    ReconstructionLoss,
    ReconstructionLossConfig,
    adaptive_generator_weight,
    discriminator_loss,
    generator_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    non_saturating_discriminator_loss,
    non_saturating_generator_loss,
    r1_penalty,
)
from vq.tokenizers.losses.lpips import default_lin_path

torchvision = pytest.importorskip("torchvision")

LPIPS_CHANNELS = (64, 128, 256, 512, 512)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torchvision_features() -> nn.Sequential:
    """torchvision's VGG16 ``features`` (configuration "D"), randomly initialised as VGG is."""
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    for module in features:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.normal_(module.bias, std=0.1)
    return features


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random VGG16 + lin weights saved as the real files are laid out."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("lpips")
    features = torchvision_features().eval()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.randn(4, 8)  # a full VGG16 state dict has these too
    vgg_path = folder / "vgg16.pth"
    torch.save(state, vgg_path)
    lins = [torch.rand(1, c, 1, 1) for c in LPIPS_CHANNELS]
    lin_path = folder / "vgg_lin.pth"
    torch.save({f"lin{i}.model.1.weight": w for i, w in enumerate(lins)}, lin_path)
    return {"vgg_path": vgg_path, "lin_path": lin_path, "features": features, "lins": lins}


@pytest.fixture(scope="module")
def lpips(weights):
    return LPIPS(LPIPSConfig(vgg_path=weights["vgg_path"], lin_path=weights["lin_path"]))


def reference_lpips(features: nn.Sequential, lins: list[torch.Tensor], x, y) -> torch.Tensor:
    """LPIPS written out plainly: taps are the ReLUs right before each max-pool."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(image):
        h, out = (image - shift) / scale, []
        for i, layer in enumerate(features):
            h = layer(h)
            if isinstance(layer, nn.ReLU) and isinstance(features[i + 1], nn.MaxPool2d):
                out.append(h.clone())
        return out

    total = torch.zeros(x.shape[0])
    for fx, fy, w in zip(taps(x), taps(y), lins):
        nx = fx / (torch.linalg.vector_norm(fx, dim=1, keepdim=True) + 1e-10)
        ny = fy / (torch.linalg.vector_norm(fy, dim=1, keepdim=True) + 1e-10)
        total += torch.einsum("bchw,c->bhw", (nx - ny) ** 2, w.flatten()).mean(dim=(1, 2))
    return total


def images(n=2, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_lpips_equals_plain_reference(lpips, weights):
    x, y = images(seed=1), images(seed=2)
    with torch.no_grad():
        expected = reference_lpips(weights["features"], weights["lins"], x, y)
        got = lpips(x, y)
    assert got.shape == (2,)
    assert (got > 0).all()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")
def test_lpips_equals_the_lpips_package(lpips, weights):
    """The official implementation (random VGG copied in, our lin file) gives the same values."""
    lpips_package = pytest.importorskip("lpips")
    official = lpips_package.LPIPS(
        net="vgg", pnet_rand=True, model_path=str(weights["lin_path"]), verbose=False
    )
    state = weights["features"].state_dict()
    with torch.no_grad():
        for k in range(1, 6):
            for name, module in getattr(official.net, f"slice{k}").named_children():
                if isinstance(module, nn.Conv2d):
                    module.weight.copy_(state[f"{name}.weight"])
                    module.bias.copy_(state[f"{name}.bias"])
        x, y = images(seed=3), images(seed=4)
        torch.testing.assert_close(lpips(x, y), official(x, y).flatten(), rtol=1e-4, atol=1e-6)


def test_lpips_of_identical_images_is_zero(lpips):
    x = images()
    assert torch.equal(lpips(x, x), torch.zeros(2))


def test_lpips_is_frozen_but_passes_gradients_to_its_input(lpips):
    assert list(lpips.parameters()) == []
    x = images().requires_grad_(True)
    lpips(x, images(seed=5)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lpips_is_never_in_a_state_dict(lpips):
    owner = nn.Module()
    owner.head = nn.Linear(2, 2)
    owner.lpips = lpips
    assert lpips.state_dict() == {}
    assert set(owner.state_dict()) == {"head.weight", "head.bias"}
    # A checkpoint without LPIPS loads strictly and leaves LPIPS as it was.
    before = lpips(images(seed=6), images(seed=7))
    result = owner.load_state_dict(
        {f"head.{k}": v for k, v in nn.Linear(2, 2).state_dict().items()}
    )
    assert result.missing_keys == [] and result.unexpected_keys == []
    torch.testing.assert_close(lpips(images(seed=6), images(seed=7)), before)


def test_lpips_stays_in_eval_mode_unless_dropout_is_asked(weights, lpips):
    lpips.train()
    assert not lpips.training
    with_dropout = LPIPS(
        LPIPSConfig(vgg_path=weights["vgg_path"], lin_path=weights["lin_path"], dropout=0.5)
    )
    assert not with_dropout.training
    with_dropout.train()
    assert with_dropout.training


def test_lpips_weights_follow_dtype_moves(lpips):
    x, y = images(seed=8), images(seed=9)
    expected = lpips(x, y).double()
    lpips.double()
    try:
        assert lpips.vgg.features[0].weight.dtype == torch.float64
        got = lpips(x.double(), y.double())
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    finally:
        lpips.float()


def test_missing_vgg_file_names_the_file_and_how_to_get_it(tmp_path, weights):
    missing = tmp_path / "nowhere" / "vgg16.pth"
    with pytest.raises(UserError, match="IMAGENET1K_V1") as error:
        LPIPS(LPIPSConfig(vgg_path=missing, lin_path=weights["lin_path"]))
    assert str(missing.resolve()) in str(error.value)


def test_missing_or_wrong_lin_file_is_a_user_error(tmp_path, weights):
    missing = tmp_path / "vgg_lin.pth"
    with pytest.raises(UserError, match="lpips") as error:
        LPIPS(LPIPSConfig(vgg_path=weights["vgg_path"], lin_path=missing))
    assert str(missing.resolve()) in str(error.value)
    torch.save({"lin0.model.1.weight": torch.rand(1, 3, 1, 1)}, missing)
    with pytest.raises(UserError, match=r"lin0\.model\.1\.weight"):
        LPIPS(LPIPSConfig(vgg_path=weights["vgg_path"], lin_path=missing))


def test_lin_heads_of_the_installed_lpips_package_load(weights):
    pytest.importorskip("lpips")
    path = default_lin_path()
    assert path.parts[-4:] == ("lpips", "weights", "v0.1", "vgg.pth")
    model = LPIPS(LPIPSConfig(vgg_path=weights["vgg_path"]))
    official = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.lin4, official["lin4.model.1.weight"])


def test_reconstruction_loss_terms(weights):
    x, y = images(seed=10), images(seed=11)
    plain = ReconstructionLoss(
        ReconstructionLossConfig(l1_weight=1.0, l2_weight=2.0, lpips_weight=0)
    )
    losses = plain(x, y)
    assert set(losses) == {"l1_r_loss", "l2_r_loss"}
    torch.testing.assert_close(losses["l1_r_loss"], (x - y).abs().mean())
    torch.testing.assert_close(losses["l2_r_loss"], 2 * ((x - y) ** 2).mean())

    config = ReconstructionLossConfig(
        lpips_weight=0.5,
        lpips=LPIPSConfig(vgg_path=weights["vgg_path"], lin_path=weights["lin_path"]),
    )
    full = ReconstructionLoss(config)
    losses = full(x, y)
    assert set(losses) == {"l1_r_loss", "lpips_r_loss"}
    torch.testing.assert_close(losses["lpips_r_loss"], 0.5 * full.lpips(x, y).mean())
    assert full.state_dict() == {}


def test_hinge_losses_known_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # D: (mean(relu(1 - real)) + mean(relu(1 + fake))) / 2 = (0.25 + 0.75) / 2
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(0.5)
    assert hinge_generator_loss(fake).item() == pytest.approx(0.75)
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx(0.5)
    assert generator_loss("hinge", fake).item() == pytest.approx(0.75)


def test_non_saturating_losses_known_values():
    zeros = torch.zeros(3)
    assert non_saturating_discriminator_loss(zeros, zeros).item() == pytest.approx(math.log(2))
    assert non_saturating_generator_loss(zeros).item() == pytest.approx(math.log(2))
    real, fake = torch.tensor([1.0]), torch.tensor([-1.0])
    expected_d = math.log1p(math.exp(-1.0))  # both halves equal log(1 + e^-1)
    assert discriminator_loss("non_saturating", real, fake).item() == pytest.approx(expected_d)
    assert generator_loss("non_saturating", fake).item() == pytest.approx(math.log1p(math.e))
    # Same as BCE-with-logits of fake against "real".
    torch.testing.assert_close(
        non_saturating_generator_loss(fake),
        F.binary_cross_entropy_with_logits(fake, torch.ones(1)),
    )


def test_gan_losses_are_fp32_under_autocast():
    logits = torch.randn(4, 1, 3, 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert hinge_discriminator_loss(logits, logits).dtype == torch.float32
        assert non_saturating_generator_loss(logits).dtype == torch.float32


class QuadraticCritic(nn.Module):
    """D(x) = a * ||x||^2 per sample, so dD/dx = 2 a x; records the mode it ran in."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.a * x.pow(2).sum(dim=(1, 2, 3))


def test_r1_penalty_matches_analytic_gradient_norm():
    critic = QuadraticCritic(0.7)
    x = images(n=3, size=4)
    penalty = r1_penalty(critic, x)
    squared_norms = x.pow(2).sum(dim=(1, 2, 3))  # ||x_b||^2
    expected = (4 * 0.7**2 * squared_norms).mean()  # ||2 a x_b||^2
    torch.testing.assert_close(penalty, expected)
    assert critic.modes == [False] and critic.training  # ran in eval, mode restored
    penalty.backward()  # differentiable in D's parameters: d/da = 8 a mean ||x||^2
    torch.testing.assert_close(critic.a.grad, 8 * 0.7 * squared_norms.mean())


def test_adaptive_generator_weight_hand_computation():
    torch.manual_seed(0)
    rec_grad, g_grad = torch.randn(3, 4), torch.randn(3, 4).requires_grad_()
    weight = adaptive_generator_weight(rec_grad, g_grad, gain=0.75)
    expected = rec_grad.norm() / (g_grad.detach().norm() + 1e-4) * 0.75
    torch.testing.assert_close(weight, expected)
    assert not weight.requires_grad


def test_adaptive_generator_weight_is_clamped():
    rec_grad = torch.full((2, 2), 10.0)  # ||grad|| = 20
    no_grad = torch.zeros(2, 2)  # no GAN gradient at all: 20 / 1e-4 = 2e5, clamped
    weight = adaptive_generator_weight(rec_grad, no_grad, gain=0.8)
    assert weight.item() == pytest.approx(1e4 * 0.8)
    weight = adaptive_generator_weight(rec_grad, no_grad, gain=1.0, max=50.0)
    assert weight.item() == pytest.approx(50.0)


def test_lpips_loading_uses_no_pickled_code(tmp_path, weights):
    """weights_only loading: a file holding an arbitrary object is refused as a UserError."""
    bad = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": Path("x")}, bad)
    with pytest.raises(UserError, match=re.escape(str(bad))):
        LPIPS(LPIPSConfig(vgg_path=bad, lin_path=weights["lin_path"]))
