"""``convert llamagen-gpt`` and the ``configs/llamagen/c2i_*_released.py`` configs.

The command's bad inputs end in one ``error:`` line and exit 2; the released configs build
the network the converter describes and LlamaGen's ds16 tokenizer; and a tiny end-to-end
run converts a LlamaGen-layout VQ tokenizer and GPT, then samples with a released config.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from vq.core.configfile import dump_config, load_config
from vq.generators.convert_llamagen import convert
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.autoencoders.vqgan import VQGANDecoderConfig, VQGANEncoderConfig
from vq.tokenizers.connectors import ConnectorConfig
from vq.tokenizers.convert.llamagen import llamagen_quantizer
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer, PixelTokenizerConfig
from vq.train.export import convert_command
from vq.train.sample import sample_main

REPO = Path(__file__).resolve().parents[3]
LLAMAGEN_VQGAN = REPO / "configs" / "llamagen" / "vqgan_imagenet_ddp.py"
RELEASED = {s: REPO / "configs" / "llamagen" / f"c2i_{s}_released.py" for s in ("B", "L", "XL")}
SIZES = {"B": (12, 768), "L": (24, 1024), "XL": (36, 1280)}


def gpt_state(
    depth: int, width: int, codes: int, classes: int, device: str = "cpu"
) -> dict[str, Tensor]:
    """Random weights of a LlamaGen c2i GPT under its own names (with the null class row)."""
    hidden = 256 * math.ceil(int(8 * width / 3) / 256)
    shapes = {
        "cls_embedding.embedding_table.weight": (classes + 1, width),
        "tok_embeddings.weight": (codes, width),
        "norm.weight": (width,),
        "output.weight": (codes, width),
    }
    for i in range(depth):
        p = f"layers.{i}."
        shapes |= {
            p + "attention_norm.weight": (width,),
            p + "attention.wqkv.weight": (3 * width, width),
            p + "attention.wo.weight": (width, width),
            p + "ffn_norm.weight": (width,),
            p + "feed_forward.w1.weight": (hidden, width),
            p + "feed_forward.w3.weight": (hidden, width),
            p + "feed_forward.w2.weight": (width, hidden),
        }
    g = torch.Generator().manual_seed(0)
    if device == "meta":
        return {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    return {k: 0.3 * torch.randn(s, generator=g) for k, s in shapes.items()}


def llamagen_vq_state(ours: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our pixel tokenizer's weights under LlamaGen's VQModel names: the inverse of
    ``vq.tokenizers.convert.llamagen`` (attention split back into 1x1 conv q, k, v, proj)."""
    rules = [
        (r"(encoder|decoder)\.in_conv\.", r"\1.conv_in."),
        (r"(encoder|decoder)\.out_norm\.", r"\1.norm_out."),
        (r"(encoder|decoder)\.out_conv\.", r"\1.conv_out."),
        (r"(encoder|decoder)\.mid\.block1\.", r"\1.mid.0."),
        (r"(encoder|decoder)\.mid\.attention\.", r"\1.mid.1."),
        (r"(encoder|decoder)\.mid\.block2\.", r"\1.mid.2."),
        (r"(encoder|decoder)\.levels\.(\d+)\.blocks\.", r"\1.conv_blocks.\2.res."),
        (r"(encoder|decoder)\.levels\.(\d+)\.attentions\.", r"\1.conv_blocks.\2.attn."),
        (r"encoder\.levels\.(\d+)\.resample\.", r"encoder.conv_blocks.\1.downsample."),
        (r"decoder\.levels\.(\d+)\.resample\.", r"decoder.conv_blocks.\1.upsample."),
        (r"post_encode\.conv\.", "quant_conv."),
        (r"pre_decode\.conv\.", "post_quant_conv."),
        (r"quantizer\.codebook$", "quantize.embedding.weight"),
    ]
    out: dict[str, Tensor] = {}
    for key, value in ours.items():
        if key == "quantizer.initialized":
            continue
        for pattern, replacement in rules:
            key = re.sub("^" + pattern, replacement, key)
        key = key.replace(".shortcut.", ".nin_shortcut.")
        if key.endswith("in_proj_weight") or key.endswith("in_proj_bias"):
            prefix, kind = key.rsplit(".", 1)[0], "weight" if key.endswith("weight") else "bias"
            for name, part in zip("qkv", value.chunk(3)):
                out[f"{prefix}.{name}.{kind}"] = part[..., None, None] if kind == "weight" else part
        elif ".out_proj." in key:
            conv = value[..., None, None] if key.endswith("weight") else value
            out[key.replace(".out_proj.", ".proj_out.")] = conv
        else:
            out[key] = value
    return out


def run_convert(capsys, *argv: str) -> tuple[int, str, str]:
    code = convert_command(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------- the command -------------


def test_bad_checkpoints_fail_in_one_error_line(tmp_path: Path, capsys) -> None:
    good = gpt_state(2, 64, 32, 10)
    tokenizer = {"quantize.embedding.weight": torch.zeros(4, 2)}
    cases = {
        "tokenizer.pt": ({"model": tokenizer}, "expected a tensor 'tok_embeddings.weight'"),
        "unknown.pt": ({"model": {**good, "foo.weight": torch.zeros(2)}}, "not part of"),
        "missing.pt": (
            {k: v for k, v in good.items() if k != "layers.1.feed_forward.w2.weight"},
            "lacks layers.1.feed_forward.w2.weight",
        ),
        "shape.pt": ({**good, "layers.0.ffn_norm.weight": torch.zeros(65)}, "unexpected shape"),
    }
    for name, (checkpoint, message) in cases.items():
        torch.save(checkpoint, tmp_path / name)
        argv = ["llamagen-gpt", str(tmp_path / name), str(tmp_path / "out")]
        code, out, err = run_convert(capsys, *argv, "--options", "heads:4", "num_classes:10")
        assert code == 2 and out == "", name
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    code, _, err = run_convert(
        capsys, "llamagen-gpt", str(tmp_path / "shape.pt"), "o", "--options", "grid:4"
    )
    assert code == 2 and "takes no option 'grid'" in err and "heads (default None)" in err
    code, _, err = run_convert(capsys, "llamagen-gpt", str(tmp_path / "nothing.pt"), "o")
    assert code == 2 and "checkpoint not found" in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- the configs -------------


@pytest.mark.parametrize("size", list(SIZES))
def test_released_configs_build_the_converted_network(size: str) -> None:
    depth, width = SIZES[size]
    config = load_config(RELEASED[size])
    conversion = convert(gpt_state(depth, width, 16384, 1000, "meta"), source=f"c2i_{size}.pt")
    grid = config.data.image_size // 16
    assert config.network == conversion.network(grid)
    assert config.num_classes == conversion.num_classes == 1000
    assert (config.sampling.top_k, config.sampling.top_p) == (None, None)
    assert config.sampling.guidance_scale == {"B": 2.0, "L": 2.0, "XL": 1.75}[size]
    assert load_config(RELEASED[size], {"image_size": 384}).network.overrides["grid_width"] == 24


def test_the_tokenizer_config_builds_llamagens_ds16_vqgan() -> None:
    """ir_config's tokenizer is the architecture ``convert llamagen`` infers for
    vq_ds16_c2i.pt (the layout test of vq-tokenizers checks that inference)."""
    config = load_config(REPO / load_config(RELEASED["L"]).tokenizer.config)
    assert config.model == PixelTokenizerConfig(
        encoder=VQGANEncoderConfig(width_mults=(1, 1, 2, 2, 4)),
        post_encode=ConnectorConfig(channels=(256, 8)),
        quantizer=llamagen_quantizer(16384, 8),
        pre_decode=ConnectorConfig(channels=(8, 256)),
        decoder=VQGANDecoderConfig(width_mults=(4, 2, 2, 1, 1)),
    )


# ----------------------------------------------------------------- end to end --------------


def test_convert_both_and_sample_with_a_released_config(tmp_path: Path, capsys, one_thread) -> None:
    torch.manual_seed(0)
    tokenizer = PixelTokenizer(PixelTokenizerConfig.from_preset("tiny", llamagen_quantizer(32, 8)))
    torch.save({"model": llamagen_vq_state(tokenizer.state_dict())}, tmp_path / "vq_tiny.pt")
    code, out, _ = run_convert(
        capsys, "llamagen", str(tmp_path / "vq_tiny.pt"), str(tmp_path / "vq")
    )
    assert code == 0, out
    # A run config that rebuilds the converted tokenizer: LlamaGen's VQGAN recipe, tiny model.
    model = Tokenizer.from_pretrained(tmp_path / "vq").config
    ir_config = tmp_path / "vq_tiny.py"
    ir_config.write_text(
        dump_config(load_config(LLAMAGEN_VQGAN).model_copy(update={"model": model}))
    )

    torch.save({"model": gpt_state(2, 64, 32, 10)}, tmp_path / "c2i_tiny.pt")
    argv = ["llamagen-gpt", str(tmp_path / "c2i_tiny.pt"), str(tmp_path / "gpt")]
    code, out, _ = run_convert(capsys, *argv, "--options", "heads:4", "num_classes:10")
    assert code == 0 and "LlamaGen GPT-custom (2 x 64, 4 heads; 10 classes + null, 32 codes)" in out

    weights = tmp_path / "gpt" / "model.safetensors"
    sample = [
        "tiny", str(RELEASED["B"]), "--load-model-from", str(weights),
        "--work-dirs", str(tmp_path / "work"), "--classes", "0", "7", "--per-class", "2",
        "--config-options", f"ir_config::{ir_config}",
        f"ir_state_dict::{tmp_path / 'vq' / 'model.safetensors'}", "image_size:16",
        "--override", ".network.preset::tiny", ".network.overrides.grid_width:4", ".num_classes:10",
    ]  # fmt: skip
    assert sample_main(sample) == 0
    with np.load(tmp_path / "work" / "tiny" / "samples.npz") as f:
        images, labels = f["arr_0"], f["arr_1"]
    assert images.shape == (4, 16, 16, 3) and labels.tolist() == [0, 0, 7, 7]
    assert len({image.tobytes() for image in images}) > 1
