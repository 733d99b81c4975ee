"""Convert public tokenizer checkpoints into pretrained directories of ``vq.tokenizers.api``.

    from vq.tokenizers.convert import convert_checkpoint

    convert_checkpoint("taming", Path("last.ckpt"), Path("tokenizers/taming_f16_16384"))
    Tokenizer.from_pretrained("tokenizers/taming_f16_16384")

``CONVERTERS`` names them: ``taming`` (taming-transformers VQGAN), ``beitv2`` (BEiT v2 VQ-KD,
with or without its decoder), ``llamagen`` (LlamaGen VQ ds16/ds8). Each one infers the model
size from the tensor shapes, renames keys by explicit rules (unknown keys are errors) and
loads the result strictly. The ``convert`` command of vq-train is a thin shell over
``convert_checkpoint``. Checkpoints are read with ``torch.load(weights_only=True)``; one that
pickles other objects is refused with the one-line recipe to re-save its state dict.

LPIPS needs no converter: ``vq.tokenizers.losses.lpips`` reads the ``lpips`` package's own
``vgg.pth`` ("lin" heads) directly.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from safetensors.torch import save_file

from vq.core.errors import UserError
from vq.core.tensorfiles import read_public_checkpoint
from vq.tokenizers.convert import beitv2, llamagen, taming
from vq.tokenizers.convert.common import Conversion, Extra

# Each module has ``convert(checkpoint, *, source, **options) -> Conversion`` and ``RESAVE``,
# the expression (of the loaded checkpoint ``c``) to re-save when a weights-only load refuses.
CONVERTERS: dict[str, ModuleType] = {"taming": taming, "beitv2": beitv2, "llamagen": llamagen}


def converter_options(name: str) -> dict[str, inspect.Parameter]:
    """The keyword options converter ``name`` accepts (besides ``source``)."""
    parameters = inspect.signature(_converter(name).convert).parameters
    return {k: p for k, p in parameters.items() if p.kind is p.KEYWORD_ONLY and k != "source"}


def _converter(name: str) -> ModuleType:
    if name not in CONVERTERS:
        raise UserError(f"unknown converter {name!r}; choose one of {', '.join(CONVERTERS)}")
    return CONVERTERS[name]


def convert_checkpoint(
    name: str, path: Path, out_dir: Path | None = None, options: dict[str, Any] | None = None
) -> Conversion:
    """Convert the checkpoint at ``path`` with converter ``name`` and, given ``out_dir``,
    write it there as a pretrained directory (plus ``<extra>.safetensors``/``.json`` for
    training-only parts that came with it, e.g. the discriminator)."""
    module = _converter(name)
    options = dict(options or {})
    accepted = converter_options(name)
    for key in options:
        if key not in accepted:
            raise UserError(
                f"converter {name!r} takes no option {key!r}; it accepts: "
                + (", ".join(f"{k} (default {p.default!r})" for k, p in accepted.items()) or "none")
            )
    checkpoint = read_public_checkpoint(Path(path), name, module.RESAVE)
    conversion = module.convert(checkpoint, source=str(path), **options)
    if out_dir is not None:
        save_conversion(conversion, Path(out_dir))
    return conversion


def save_conversion(conversion: Conversion, out_dir: Path) -> None:
    conversion.tokenizer.save_pretrained(out_dir)
    for extra_name, extra in conversion.extras.items():
        save_extra(extra, out_dir, extra_name)


def save_extra(extra: Extra, out_dir: Path, name: str) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in extra.state.items()}
    save_file(tensors, str(out_dir / f"{name}.safetensors"))
    config = json.loads(extra.config.model_dump_json(round_trip=True))
    (out_dir / f"{name}.json").write_text(json.dumps(config, indent=2) + "\n")


__all__ = ["CONVERTERS", "Conversion", "convert_checkpoint", "converter_options", "save_conversion"]
