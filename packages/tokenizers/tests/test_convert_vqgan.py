"""taming-transformers and LlamaGen converters against independent reference models.

The reference below is a small re-statement of taming's ``VQModel`` and LlamaGen's variant
of it (their module names, their attention as two batched matmuls, their level numbering),
written from the upstream sources' semantics. A random reference checkpoint, converted and
loaded strictly into our model, must tokenize images exactly as the reference does and
decode tokens to the same pixels. Full-size (f16-1024, f16-16384, ds8) layouts are checked
on the meta device: every key and shape must match our model built from the inferred config.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from vq.core.errors import UserError
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.autoencoders.vqgan import VQGANDecoderConfig, VQGANEncoderConfig
from vq.tokenizers.convert import convert_checkpoint
from vq.tokenizers.convert import llamagen as llamagen_convert
from vq.tokenizers.convert import taming as taming_convert
from vq.tokenizers.discriminators.patchgan import PatchGANConfig, PatchGANDiscriminator
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------- the reference -----------


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class RefResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class RefAttnBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w).permute(0, 2, 1)  # (B, HW, C)
        k = self.k(n).reshape(b, c, h * w)  # (B, C, HW)
        weights = torch.softmax(torch.bmm(q, k) * c**-0.5, dim=2)  # (B, HW_q, HW_k)
        v = self.v(n).reshape(b, c, h * w)
        out = torch.bmm(v, weights.permute(0, 2, 1)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class RefDownsample(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class RefUpsample(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class RefLevel(nn.Module):
    """One resolution level; attribute names depend on the codebase (``style``)."""

    def __init__(self, style, cin, cout, blocks, attention, resample) -> None:
        super().__init__()
        res = nn.ModuleList(RefResnetBlock(cin if j == 0 else cout, cout) for j in range(blocks))
        attn = nn.ModuleList(RefAttnBlock(cout) for _ in range(blocks if attention else 0))
        self.names = ("block", "attn") if style == "taming" else ("res", "attn")
        setattr(self, self.names[0], res)
        setattr(self, self.names[1], attn)
        self.resample_name = None
        if resample is not None:
            self.resample_name = "downsample" if resample is RefDownsample else "upsample"
            setattr(self, self.resample_name, resample(cout))

    def forward(self, x: Tensor) -> Tensor:
        res, attn = getattr(self, self.names[0]), getattr(self, self.names[1])
        for j, block in enumerate(res):
            x = block(x)
            if len(attn):
                x = attn[j](x)
        return getattr(self, self.resample_name)(x) if self.resample_name else x


class RefMid(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = (
            RefResnetBlock(c, c),
            RefAttnBlock(c),
            RefResnetBlock(c, c),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def ref_mid(style: str, c: int) -> nn.Module:
    if style == "taming":
        return RefMid(c)
    return nn.Sequential(RefResnetBlock(c, c), RefAttnBlock(c), RefResnetBlock(c, c))


class RefEncoder(nn.Module):
    def __init__(self, style: str, ch: int, ch_mult: tuple[int, ...], blocks: int, z: int) -> None:
        super().__init__()
        n = len(ch_mult)
        widths = [ch * m for m in ch_mult]
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        levels = nn.ModuleList(
            RefLevel(
                style,
                ch if i == 0 else widths[i - 1],
                widths[i],
                blocks,
                attention=i == n - 1,
                resample=RefDownsample if i < n - 1 else None,
            )
            for i in range(n)
        )
        self.levels_name = "down" if style == "taming" else "conv_blocks"
        setattr(self, self.levels_name, levels)
        self.mid = ref_mid(style, widths[-1])
        self.norm_out, self.conv_out = norm(widths[-1]), nn.Conv2d(widths[-1], z, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in getattr(self, self.levels_name):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class RefDecoder(nn.Module):
    """taming keeps ``up[i]`` at resolution index i and runs them in reverse; LlamaGen
    stores ``conv_blocks`` in the order they run."""

    def __init__(self, style: str, ch: int, ch_mult: tuple[int, ...], blocks: int, z: int) -> None:
        super().__init__()
        n = len(ch_mult)
        widths = [ch * m for m in ch_mult]
        self.style = style
        self.conv_in = nn.Conv2d(z, widths[-1], 3, padding=1)
        self.mid = ref_mid(style, widths[-1])
        run_order = []
        cin = widths[-1]
        for i in reversed(range(n)):
            resample = RefUpsample if i > 0 else None
            run_order.append(RefLevel(style, cin, widths[i], blocks + 1, i == n - 1, resample))
            cin = widths[i]
        if style == "taming":
            self.up = nn.ModuleList(reversed(run_order))  # up[i] = resolution index i
        else:
            self.conv_blocks = nn.ModuleList(run_order)
        self.norm_out, self.conv_out = norm(widths[0]), nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        levels = reversed(self.up) if self.style == "taming" else self.conv_blocks
        for level in levels:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class RefQuantize(nn.Module):
    def __init__(self, num_codes: int, dim: int, l2_norm: bool) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_codes, dim)
        self.l2_norm = l2_norm
        if l2_norm:  # LlamaGen keeps a usage history buffer
            self.register_buffer("codebook_used", torch.zeros(64))

    def codebook(self) -> Tensor:
        return F.normalize(self.embedding.weight, dim=1) if self.l2_norm else self.embedding.weight

    def indices(self, z: Tensor) -> Tensor:  # (B, D, h, w) -> (B, h, w)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        if self.l2_norm:
            flat = F.normalize(flat, dim=1)
        e = self.codebook()
        d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.t()
        return d.argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])


class RefVQModel(nn.Module):
    def __init__(self, style, ch=32, ch_mult=(1, 2, 2), blocks=1, z=32, codes=32, dim=8) -> None:
        super().__init__()
        self.encoder = RefEncoder(style, ch, ch_mult, blocks, z)
        self.decoder = RefDecoder(style, ch, ch_mult, blocks, z)
        self.quant_conv, self.post_quant_conv = nn.Conv2d(z, dim, 1), nn.Conv2d(dim, z, 1)
        self.quantize = RefQuantize(codes, dim, l2_norm=style == "llamagen")

    def encode(self, x: Tensor) -> Tensor:
        return self.quantize.indices(self.quant_conv(self.encoder(x)))

    def decode(self, ids: Tensor) -> Tensor:
        codes = self.quantize.codebook()[ids].permute(0, 3, 1, 2)  # (B, D, h, w)
        return self.decoder(self.post_quant_conv(codes))


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random non-trivial values everywhere (GroupNorm affine and biases included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.2 if p.ndim > 1 else 0.1))
    return model.eval()


def images(n: int = 2, size: int = 16) -> Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1


def taming_discriminator_state() -> dict[str, Tensor]:
    torch.manual_seed(1)
    disc = PatchGANDiscriminator(PatchGANConfig(width=8, depth=2))
    return {
        f"loss.discriminator.main.{k[len('layers.') :]}": v for k, v in disc.state_dict().items()
    }


# ----------------------------------------------------------------- tests -------------------


@pytest.mark.parametrize("style", ["taming", "llamagen"])
def test_converted_model_tokenizes_and_decodes_like_the_reference(tmp_path, style):
    ref = randomized(RefVQModel(style))
    state = dict(ref.state_dict())
    if style == "taming":
        state |= taming_discriminator_state()
        state["loss.perceptual_loss.net.slice1.0.weight"] = torch.zeros(2)
        checkpoint = {"state_dict": state, "global_step": 7}  # a Lightning-style checkpoint
    else:
        checkpoint = {"model": state, "steps": 7}
    path = tmp_path / "ckpt.pt"
    torch.save(checkpoint, path)

    conversion = convert_checkpoint(style, path, tmp_path / "out", {"image_size": 16})
    tokenizer = Tokenizer.from_pretrained(tmp_path / "out")

    x = images()
    with torch.no_grad():
        ref_ids = ref.encode(x)
        assert torch.equal(tokenizer.encode(x), ref_ids)
        # SDPA and taming's two matmuls sum in different orders: equal up to rounding.
        assert (tokenizer.model.decode(ref_ids) - ref.decode(ref_ids)).abs().max() < 1e-4
        ref_codes = ref.quantize.codebook()[ref_ids].permute(0, 3, 1, 2)
        assert (tokenizer.codes(ref_ids) - ref_codes).abs().max() < 1e-6
    assert len(ref_ids.unique()) > 3  # the comparison exercised several codes

    config = tokenizer.config
    assert config.encoder.width_mults == (1, 2, 2) and config.decoder.width_mults == (2, 2, 1)
    assert (config.encoder.depth, config.decoder.depth) == (1, 2)
    assert config.quantizer.normalize == (style == "llamagen")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["grid"] == [4, 4]

    if style == "taming":
        assert "loss.perceptual_loss.net.slice1.0.weight" in conversion.dropped
        disc_config = PatchGANConfig.model_validate_json(
            (tmp_path / "out" / "discriminator.json").read_text()
        )
        assert (disc_config.width, disc_config.depth) == (8, 2)
        disc = PatchGANDiscriminator(disc_config)
        disc.load_state_dict(load_file(str(tmp_path / "out" / "discriminator.safetensors")))
    else:
        assert conversion.dropped == ["quantize.codebook_used"]


def test_converted_weights_are_the_checkpoints_own():
    """The state dict after conversion holds the checkpoint's tensors (attention fused)."""
    ref = randomized(RefVQModel("taming"))
    translated = taming_convert.translate(dict(ref.state_dict()), "ref")
    ours = translated.state
    # taming's up.0 is the last level we run; its first block widens 64 -> 32 channels.
    assert torch.equal(
        ours["decoder.levels.2.blocks.0.shortcut.weight"],
        ref.decoder.up[0].block[0].nin_shortcut.weight,
    )
    attention = ref.encoder.down[2].attn[0]
    fused = ours["encoder.levels.2.attentions.0.in_proj_weight"]  # (3C, C)
    assert torch.equal(fused[64:128], attention.k.weight[:, :, 0, 0])
    assert torch.equal(ours["encoder.levels.2.attentions.0.out_proj.bias"], attention.proj_out.bias)
    assert torch.equal(ours["quantizer.codebook"], ref.quantize.embedding.weight)


SIZES = {
    # name: (style, ch_mult, codes, dim): taming's ImageNet models and LlamaGen's ds16/ds8
    "taming_f16_1024": ("taming", (1, 1, 2, 2, 4), 1024, 256),
    "taming_f16_16384": ("taming", (1, 1, 2, 2, 4), 16384, 256),
    "llamagen_ds16": ("llamagen", (1, 1, 2, 2, 4), 16384, 8),
    "llamagen_ds8": ("llamagen", (1, 2, 2, 4), 16384, 8),
}


@pytest.mark.slow  # the first use of the meta device costs seconds of lazy registration
@pytest.mark.parametrize("name", list(SIZES))
def test_full_size_layouts_map_key_for_key(name):
    style, ch_mult, codes, dim = SIZES[name]
    with torch.device("meta"):
        ref = RefVQModel(style, ch=128, ch_mult=ch_mult, blocks=2, z=256, codes=codes, dim=dim)
    module = taming_convert if style == "taming" else llamagen_convert
    translated = module.translate(dict(ref.state_dict()), name)
    config = translated.config
    assert config.encoder == VQGANEncoderConfig(width_mults=ch_mult)
    assert config.decoder == VQGANDecoderConfig(width_mults=tuple(reversed(ch_mult)))
    assert (config.quantizer.num_codes, config.quantizer.dim) == (codes, dim)
    with torch.device("meta"):
        expected = PixelTokenizer(config).state_dict()
    assert sorted(translated.state) == sorted(expected)
    for key, value in expected.items():
        assert translated.state[key].shape == value.shape, key


def test_unknown_keys_and_incomplete_checkpoints_are_user_errors(tmp_path):
    state = dict(randomized(RefVQModel("taming")).state_dict())
    path = tmp_path / "ckpt.pt"
    torch.save(state | {"first_stage_model.extra": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="first_stage_model.extra"):
        convert_checkpoint("taming", path)

    del state["decoder.conv_out.bias"]
    torch.save(state, path)
    with pytest.raises(UserError, match=r"missing decoder\.out_conv\.bias"):
        convert_checkpoint("taming", path)

    with pytest.raises(UserError, match="takes no option 'image_sise'"):
        convert_checkpoint("taming", path, options={"image_sise": 256})
    with pytest.raises(UserError, match="unknown converter"):
        convert_checkpoint("dalle", path)


class LightningCallback:
    """Stands for the pickled objects of a Lightning checkpoint (callbacks, hparams)."""


def test_checkpoint_with_pickled_objects_is_refused_with_a_recipe(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "callbacks": LightningCallback()}, path)
    with pytest.raises(
        UserError,
        match=r"(?s)refused it \(unsupported global \S*LightningCallback\).*c\['state_dict'\]",
    ):
        convert_checkpoint("taming", path)
    with pytest.raises(UserError, match="not found"):
        convert_checkpoint("taming", tmp_path / "missing.ckpt")
