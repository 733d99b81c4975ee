"""Reading and writing weight and checkpoint files with errors a user can act on.

safetensors, zip (``torch.save``'s container) and pickle each fail in their own words on a
truncated, random or foreign file (``SafetensorError: header too large``, ``PytorchStreamReader
failed reading zip archive``, ``UnpicklingError``). Every reader here turns those into one
``UserError`` that names the file and says what is wrong with it, so a command ends with one
``error:`` line and exit status 2 instead of a library traceback. The writers turn every
way a full disk shows itself into the same ``No space left on device`` error.

Checkpoints of other projects (taming, LlamaGen, BEiT v2), which the converters of
``vq.tokenizers`` and ``vq.generators`` read, go through ``read_public_checkpoint`` and
``find_state_dict``.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import struct
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from vq.core.errors import UserError, few
from vq.core.parallel import unwrap

# What the libraries raise for a file that is not what it should be.
_READ_ERRORS = (
    SafetensorError,
    RuntimeError,  # torch's zip reader
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    EOFError,
    ValueError,
    OSError,
)

# What torch's weights-only unpickler raises on bytes that are not a pickle at all besides
# UnpicklingError: its stack machine indexes, looks up and decodes whatever the opcodes say
# (about 1 in 10 random files ends in one of these).
_UNPICKLER_ERRORS = (pickle.PickleError, IndexError, KeyError, TypeError, struct.error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class DamagedFileError(UserError):
    """A file that exists but cannot be read as what it should be."""


def damaged(path: Path, error: BaseException) -> DamagedFileError:
    """The one-line error of a file that exists but cannot be read."""
    return DamagedFileError(
        f"cannot read {path}: {_first_line(error)} (the file is damaged, e.g. truncated, or "
        "not of the expected format)"
    )


def _exists(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"file not found: {path}")


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` file, on the CPU."""
    path = Path(path)
    _exists(path)
    try:
        return load_file(str(path))
    except _READ_ERRORS as error:
        raise damaged(path, error) from None


def read_torch(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a pickle with code in it, a
    truncated archive or a foreign file is one ``UserError``."""
    path = Path(path)
    _exists(path)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (*_READ_ERRORS, *_UNPICKLER_ERRORS) as error:
        raise damaged(path, error) from None


def check_readable(path: str | Path) -> None:
    """Raise the error ``read_tensors``/``read_torch`` would, cheaply: safetensors files
    only have their header read (which also detects a truncated file: the header's offsets
    must cover it exactly); torch files are loaded whole."""
    path = Path(path)
    _exists(path)
    if path.suffix != ".safetensors":
        read_torch(path)
        return
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except _READ_ERRORS as error:
        raise damaged(path, error) from None


def intact(directory: Path) -> bool:
    """Whether every ``.safetensors`` and ``.pt`` file below ``directory`` reads."""
    try:
        for file in sorted(directory.rglob("*")):
            if file.suffix in (".safetensors", ".pt") and file.is_file():
                check_readable(file)
    except UserError:
        return False
    return True


def weights_file(path: Path) -> Path:
    """The file behind a ``--load-model-from`` path: itself, or a checkpoint directory's
    ``models/model.safetensors``."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "models" / "model.safetensors"
        if not candidate.is_file():
            raise UserError(f"{path} is not a checkpoint directory with models/model.safetensors")
        path = candidate
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    return path


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file, a ``.pt``/``.pth`` file (tensors only) or a
    checkpoint directory (its ``models/model.safetensors``)."""
    path = weights_file(path)
    if path.suffix == ".safetensors":
        return read_tensors(path)
    state = read_torch(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a flat state dict of tensors")
    return state


@dataclass
class LoadReport:
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}"
            f"{_listed(self.missing)}; unexpected {len(self.unexpected)}{_listed(self.unexpected)}; "
            f"shape-mismatched {len(self.mismatched)}{_listed(self.mismatched)}"
        )


def _listed(keys: list[str]) -> str:
    return f" ({few(keys, 4)})" if keys else ""


def load_weights(module: nn.Module, files: Iterable[Path]) -> LoadReport:
    """Load the merged state dicts of ``files`` (later files win) into ``module``."""
    merged: dict[str, torch.Tensor] = {}
    for f in files:
        merged.update(read_weights(Path(f)))
    target = unwrap(module)
    own = target.state_dict()
    usable = {k: v for k, v in merged.items() if k in own and own[k].shape == v.shape}
    mismatched = [k for k in merged if k in own and own[k].shape != merged[k].shape]
    missing, unexpected = target.load_state_dict(usable, strict=False)
    unexpected = [k for k in merged if k not in own]
    return LoadReport(sorted(usable), sorted(missing), sorted(unexpected), sorted(mismatched))


LOW_SPACE_BYTES = 64 * 2**20
"""A write that fails with less free space than this is reported as a full disk."""


def write_failure(error: Exception, path: Path) -> OSError:
    """One plain cause for a failed write of ``path``: torch's zip writer reports a full
    disk as ``enforce fail ... file write failed``, safetensors in its own words, the OS
    as ENOSPC; all of them become ``No space left on device (N MiB free)``."""
    try:
        free: int | None = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    full = isinstance(error, OSError) and error.errno == errno.ENOSPC
    if full or (free is not None and free < LOW_SPACE_BYTES):
        shown = f" ({free / 2**20:.0f} MiB free)" if free is not None else ""
        return OSError(errno.ENOSPC, f"No space left on device{shown}", str(path))
    if isinstance(error, OSError):
        return error
    text = str(error).strip().splitlines()
    return OSError(errno.EIO, text[0] if text else type(error).__name__, str(path))


def write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``tensors`` as safetensors; a failure is one plain ``OSError``."""
    # clone: safetensors refuses tensors that share storage (tied embeddings)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
    try:
        save_file(tensors, str(path))
    except (OSError, RuntimeError, SafetensorError) as error:
        raise write_failure(error, path) from None


def write_torch(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path``, synced; a failure is one plain ``OSError``."""
    try:
        with open(path, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as error:
        raise write_failure(error, path) from None


# ------------------------------------------------- checkpoints of other projects -----


def read_public_checkpoint(path: Path, what: str, resave_hint: str) -> Any:
    """``torch.load(path, weights_only=True)`` of a public checkpoint of kind ``what``.

    Lightning and training-script checkpoints often pickle non-tensor objects (callbacks,
    argparse namespaces) that a weights-only load refuses. We never unpickle code; the
    message says how to re-save the state dict from a trusted copy instead.
    """
    if not path.is_file():
        raise UserError(f"{what} checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as error:
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        first = f"unsupported global {culprit[1]}" if culprit else (lines or [repr(error)])[0]
        raise UserError(
            f"{path}: a weights-only load refused it ({first}). It holds pickled objects besides "
            f"tensors. If you trust the file, re-save just its state dict, e.g.\n  python -c "
            f"\"import torch; c = torch.load('{path}', map_location='cpu', weights_only=False); "
            f"torch.save({resave_hint}, 'state_dict.pt')\"\nand convert state_dict.pt"
        ) from None


def find_state_dict(checkpoint: Any, nesting: Sequence[str], source: str) -> dict[str, Tensor]:
    """The flat ``{name: tensor}`` dict in ``checkpoint``: the checkpoint itself, or the
    first entry of ``nesting`` (e.g. Lightning's ``state_dict``) that it holds."""
    state = checkpoint
    if isinstance(checkpoint, Mapping):
        for name in nesting:
            if isinstance(checkpoint.get(name), Mapping):
                state = checkpoint[name]
                break
    if not isinstance(state, Mapping) or not state:
        raise UserError(
            f"{source}: no state dict found (looked for {list(nesting)} or a flat dict)"
        )
    others = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if others:
        raise UserError(
            f"{source}: the state dict has non-tensor entries {others[:4]}; expected a flat "
            f"state dict of tensors (nested under one of {list(nesting)} or at the top level)"
        )
    return dict(state)
