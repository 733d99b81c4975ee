"""A frozen tokenizer rebuilt from a finished run: its resolved config file plus its weights.

Later stages (the AR trainer, sampling, evaluation) never re-state a tokenizer's
architecture. They point at the config file that the tokenizer's (or pixel decoder's) run
wrote into its work dir, ``work_dirs/NAME/<config>.py``, whose run config builds the
eval-time module with ``build_tokenizer()`` (``vq.train.tokenizer_run``)::

    tokenizer = load_frozen_tokenizer(
        Path("work_dirs/decoder/vqkd/llamagen.py"),            # the reference's ir_config
        [Path("work_dirs/decoder/vqkd/checkpoints/latest"),    # ir_state_dict
         Path("work_dirs/vqkd/clip/checkpoints/latest")],      # it_state_dict (later wins)
    )
    ids = tokenizer.encode(image)      # (B, 3, H, W) in [-1, 1] -> (B, h, w)
    image = tokenizer.decode(ids)      # (B, h, w) -> (B, 3, H, W)

The weights files are merged in order, later files winning on shared keys, so a pixel
decoder's checkpoint (which leaves out the frozen tokenizer it was trained on) and the
tokenizer's own checkpoint together give every weight. Unlike the reference, which loaded
with ``strict=False`` and said nothing, a weight that no file provides is an error: a
tokenizer with a randomly initialised part would silently poison everything trained on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from vq.core.configfile import load_config
from vq.core.errors import UserError
from vq.core.logging import LOGGER
from vq.core.tensorfiles import load_weights
from vq.train.tokenizer_run import build_checked_tokenizer, tokenizer_run


def load_frozen_tokenizer(config_path: Path, state_dicts: Sequence[Path]) -> nn.Module:
    """The tokenizer of the run config at ``config_path`` with the merged ``state_dicts``.

    Returned in eval mode with ``requires_grad`` off on every parameter. The caller moves it
    to its device and must keep it out of ``run.prepare`` so checkpoints never hold it.
    """
    config_path = Path(config_path)
    if not state_dicts:
        raise UserError(
            f"tokenizer {config_path}: no weights given (pass the run's checkpoint, e.g. "
            "ir_state_dict::work_dirs/NAME/checkpoints/latest)"
        )
    run = tokenizer_run(load_config(config_path), config_path, "ir_config")
    tokenizer = build_checked_tokenizer(run, config_path)

    state_dicts = [*run.frozen_weights, *map(Path, state_dicts)]  # the config's come first
    report = load_weights(tokenizer, state_dicts)
    shown = ", ".join(str(p) for p in state_dicts)
    if report.missing or report.mismatched:
        raise UserError(
            f"tokenizer {config_path}: the weights in {shown} do not cover it: {report.summary()}"
        )
    LOGGER.info("frozen tokenizer %s from %s: %s", config_path, shown, report.summary())

    tokenizer.eval()
    tokenizer.requires_grad_(False)
    return tokenizer
