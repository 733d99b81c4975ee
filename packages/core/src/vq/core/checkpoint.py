"""Atomic, complete, exactly-resumable checkpoints.

Layout of ``work_dirs/NAME/checkpoints/``::

    iter_N/
        meta.json                 iteration, config fingerprint, world size, strategy, files
        models/<name>.safetensors trainable weights and buffers (DDP / one process)
        models/<name>.ema.safetensors   weight EMA, when configured
        dcp/                      FSDP: sharded models and optimizers (torch.distributed.checkpoint)
        state.pt                  optimizers, schedules, grad scalers, loop position (weights_only)
        rng/rank<R>.pt            RNG states of every rank
    latest -> iter_N              the newest complete checkpoint
    .iter_N.partial/              a write in progress (ignored; removed on failure)

A checkpoint is written under ``.iter_N.partial`` and renamed to ``iter_N`` only when every
rank has finished, then ``latest`` is switched atomically. A crash or a full disk during a
write therefore leaves the previous ``latest`` usable. Frozen parts (teachers, the LPIPS
network, a frozen tokenizer) are excluded by the prefixes each tracked module declares.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vq.core import distributed
from vq.core.errors import UserError
from vq.core.optim import Optimization
from vq.core.parallel import is_sharded, unwrap
from vq.core.seeding import rng_state, set_rng_state
from vq.core.tensorfiles import (
    DamagedFileError,
    check_readable,
    damaged,
    intact,
    read_tensors,
    read_torch,
    write_tensors,
    write_torch,
)

FORMAT = 1
ITER_DIR = re.compile(r"^iter_(\d+)$")


class CheckpointError(RuntimeError):
    """Writing a checkpoint failed; the previous checkpoint is intact."""


@dataclass
class Tracked:
    """A module whose weights go into checkpoints, minus its frozen sub-modules."""

    module: nn.Module
    exclude: tuple[str, ...] = ()

    def keep(self, key: str) -> bool:
        return not any(key == p or key.startswith(p + ".") for p in self.exclude)


@dataclass
class TrainingState:
    """Everything a checkpoint holds, registered by the trainer and the loop."""

    modules: dict[str, Tracked] = field(default_factory=dict)
    optimizations: dict[str, Optimization] = field(default_factory=dict)
    loop: dict[str, int] = field(default_factory=dict)

    def sharded(self) -> bool:
        return any(is_sharded(t.module) for t in self.modules.values())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The two writers of every checkpoint file; module attributes, so tests can inject faults.
_save_tensors = write_tensors
_torch_save = write_torch


def module_state(tracked: Tracked) -> dict[str, torch.Tensor]:
    """The checkpointed (non-frozen) tensors of a non-sharded module."""
    state = unwrap(tracked.module).state_dict()
    return {k: v for k, v in state.items() if tracked.keep(k)}


def iteration_of(path: Path) -> int | None:
    m = ITER_DIR.match(path.name)
    return int(m.group(1)) if m else None


def complete_checkpoints(directory: Path) -> list[Path]:
    """Complete ``iter_N`` directories, oldest first."""
    if not directory.is_dir():
        return []
    found = [
        p
        for p in directory.iterdir()
        if p.is_dir()
        and not p.is_symlink()
        and iteration_of(p) is not None
        and (p / "meta.json").is_file()
    ]
    return sorted(found, key=lambda p: iteration_of(p) or 0)


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint ``latest`` names, or the newest complete one if the link is broken."""
    link = directory / "latest"
    if link.is_symlink() or link.exists():
        target = link.resolve()
        if (target / "meta.json").is_file():
            return target
    complete = complete_checkpoints(directory)
    return complete[-1] if complete else None


class Checkpointer:
    """Saves and restores a ``TrainingState`` under ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        fingerprint: str,
        strategy: str,
        keep_last: int | None = None,
    ) -> None:
        self.directory = directory
        self.fingerprint = fingerprint
        self.strategy = strategy
        self.keep_last = keep_last

    # ---------------------------------------------------------------- save ----------

    def save(self, state: TrainingState, iteration: int) -> Path:
        final = self.directory / f"iter_{iteration}"
        partial = self.directory / f".iter_{iteration}.partial"
        error: str | None = None
        if distributed.is_main():
            try:
                shutil.rmtree(partial, ignore_errors=True)
                (partial / "rng").mkdir(parents=True)
                (partial / "models").mkdir()
            except OSError as e:
                error = str(e)
        error = distributed.broadcast_object(error)
        if error is None:
            try:
                self._write(state, partial, iteration)
            except OSError as e:
                error = f"{e.strerror or e} ({e.filename or partial})"
            except Exception as e:  # reported to every rank instead of leaving them waiting
                error = f"{type(e).__name__}: {e}"
        errors = [e for e in distributed.all_gather_objects(error) if e]
        if not errors and distributed.is_main():
            try:
                self._publish(partial, final, iteration)
            except OSError as e:
                errors.append(str(e))
        errors = distributed.broadcast_object(errors)
        if errors:
            if distributed.is_main():
                shutil.rmtree(partial, ignore_errors=True)
            previous = latest_checkpoint(self.directory)
            kept = f"; the previous checkpoint {previous.name} is intact" if previous else ""
            raise CheckpointError(f"could not write checkpoint iter_{iteration}: {errors[0]}{kept}")
        return final

    def _write(self, state: TrainingState, out: Path, iteration: int) -> None:
        rank = distributed.rank()
        _torch_save(rng_state(), out / "rng" / f"rank{rank}.pt")
        files: list[str] = []
        if state.sharded():
            self._write_sharded(state, out)
            files.append("dcp")
        elif distributed.is_main():
            for name, tracked in state.modules.items():
                _save_tensors(module_state(tracked), out / "models" / f"{name}.safetensors")
                files.append(f"models/{name}.safetensors")
        if distributed.is_main():
            if not state.sharded():  # sharded EMA shadows go through DCP with the models
                for name, opt in state.optimizations.items():
                    if opt.ema is not None:
                        _save_tensors(
                            opt.ema.state_dict(), out / "models" / f"{name}.ema.safetensors"
                        )
            blob = {
                "optimizations": {
                    n: (o.state_dict() if not state.sharded() else _without_optimizer(o))
                    for n, o in state.optimizations.items()
                },
                "loop": dict(state.loop),
            }
            _torch_save(blob, out / "state.pt")
            meta = {
                "format": FORMAT,
                "iteration": iteration,
                "fingerprint": self.fingerprint,
                "world_size": distributed.world_size(),
                "strategy": self.strategy,
                "sharded": state.sharded(),
                "modules": {n: list(t.exclude) for n, t in state.modules.items()},
                "files": files,
            }
            (out / "meta.json").write_text(json.dumps(meta, indent=2))

    def _write_sharded(self, state: TrainingState, out: Path) -> None:
        import torch.distributed.checkpoint as dcp

        dcp.save(_sharded_payload(state), checkpoint_id=str(out / "dcp"))

    def _publish(self, partial: Path, final: Path, iteration: int) -> None:
        for path in [*partial.rglob("*")]:
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        _fsync_dir(partial)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        link = self.directory / f".latest.{os.getpid()}"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(final.name)
        os.replace(link, self.directory / "latest")
        _fsync_dir(self.directory)
        if self.keep_last:
            for old in complete_checkpoints(self.directory)[: -self.keep_last]:
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)

    # ---------------------------------------------------------------- load ----------

    def check(self, path: Path) -> dict[str, Any]:
        """The metadata of checkpoint ``path``; a clear error if it is incomplete or foreign."""
        meta_file = path / "meta.json"
        if not path.is_dir():
            raise UserError(f"checkpoint {path} does not exist")
        if not meta_file.is_file():
            raise UserError(
                f"checkpoint {path} is incomplete (no meta.json): it was never finished"
            )
        try:
            meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise damaged(meta_file, error) from None
        if meta.get("format") != FORMAT:
            raise UserError(f"checkpoint {path} has format {meta.get('format')}, expected {FORMAT}")
        if meta["fingerprint"] != self.fingerprint:
            raise UserError(
                f"checkpoint {path} belongs to a different config (fingerprint {meta['fingerprint']}"
                f", this run {self.fingerprint}); use --load-model-from to load only its weights"
            )
        return meta

    def load(self, state: TrainingState, path: Path) -> dict[str, Any]:
        """Restore ``state`` from ``path``; returns the checkpoint's metadata.

        A damaged file (truncated, overwritten) is refused with the newest intact checkpoint
        of the run to resume from instead; nothing falls back silently, since resuming from
        an older checkpoint repeats iterations the user may not expect to lose.
        """
        path = Path(path).resolve()  # latest -> iter_N, so messages name the iteration
        try:
            return self._load(state, path)
        except DamagedFileError as error:
            raise self._damaged(path, error) from None

    def verify(self, path: Path) -> dict[str, Any]:
        """What ``load`` would refuse, without loading: foreign, incomplete or damaged
        checkpoints (every file's header is read, torch files whole); returns the metadata."""
        path = Path(path).resolve()
        try:
            meta = self.check(path)
            for file in sorted(path.rglob("*")):
                if file.suffix in (".safetensors", ".pt") and file.is_file():
                    check_readable(file)
        except DamagedFileError as error:
            raise self._damaged(path, error) from None
        return meta

    def _damaged(self, path: Path, error: DamagedFileError) -> UserError:
        intact_ones = [
            p
            for p in reversed(complete_checkpoints(self.directory))
            if p.resolve() != path and intact(p)
        ]
        hint = (
            f"; the newest intact checkpoint is {intact_ones[0]}: resume from it with "
            f"--load-from {intact_ones[0]} (in place of --auto-resume)"
            if intact_ones
            else "; no other checkpoint of this run is intact"
        )
        return UserError(f"checkpoint {path} is damaged: {error}{hint}")

    def _load(self, state: TrainingState, path: Path) -> dict[str, Any]:
        meta = self.check(path)
        if meta["sharded"] != state.sharded():
            raise UserError(
                f"checkpoint {path} was written by {meta['strategy']} and cannot be resumed with "
                f"{self.strategy}; consolidate it and use --load-model-from"
            )
        blob = read_torch(path / "state.pt")
        if meta["sharded"]:
            self._load_sharded(state, path)
        else:
            for name, tracked in state.modules.items():
                tensors = read_tensors(path / "models" / f"{name}.safetensors")
                missing, unexpected = unwrap(tracked.module).load_state_dict(tensors, strict=False)
                missing = [k for k in missing if tracked.keep(k)]
                if missing or unexpected:
                    raise UserError(
                        f"checkpoint {path} does not match model {name!r}: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]}"
                    )
        for name, opt in state.optimizations.items():
            saved = blob["optimizations"][name]
            if meta["sharded"]:
                _load_without_optimizer(opt, saved)
            else:
                opt.load_state_dict(saved)
            if opt.ema is not None and not meta["sharded"]:
                opt.ema.load_state_dict(read_tensors(path / "models" / f"{name}.ema.safetensors"))
        state.loop.update(blob["loop"])
        rng_file = path / "rng" / f"rank{distributed.rank()}.pt"
        if meta["world_size"] == distributed.world_size() and rng_file.is_file():
            set_rng_state(read_torch(rng_file))
        return meta

    def _load_sharded(self, state: TrainingState, path: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        payload = _sharded_payload(state)
        dcp.load(payload, checkpoint_id=str(path / "dcp"))  # loads in place, EMA included
        for name, tracked in state.modules.items():
            set_model_state_dict(
                tracked.module, payload[f"model.{name}"], options=StateDictOptions(strict=False)
            )
        for name, opt in state.optimizations.items():
            set_optimizer_state_dict(opt.module, opt.optimizer, payload[f"optim.{name}"])


def _sharded_payload(state: TrainingState) -> dict[str, Any]:
    """What DCP saves and loads in place for sharded runs: each model's checkpointed
    (non-frozen) tensors, each optimizer's state and each weight EMA."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    payload: dict[str, Any] = {}
    for name, tracked in state.modules.items():
        model_state = get_model_state_dict(tracked.module)
        payload[f"model.{name}"] = {k: v for k, v in model_state.items() if tracked.keep(k)}
    for name, opt in state.optimizations.items():
        payload[f"optim.{name}"] = get_optimizer_state_dict(opt.module, opt.optimizer)
        if opt.ema is not None:
            payload[f"ema.{name}"] = opt.ema.state_dict()
    return payload


def _without_optimizer(opt: Optimization) -> dict[str, Any]:
    """Scheduler, scaler and step count (the optimizer state itself goes through DCP)."""
    state = opt.state_dict()
    state.pop("optimizer")
    return state


def _load_without_optimizer(opt: Optimization, state: dict[str, Any]) -> None:
    opt.scheduler.load_state_dict(state["scheduler"])
    opt.scaler.load_state_dict(state["scaler"])
    opt.steps = int(state["steps"])


# -------------------------------------------------------------- weights only ---------


# -------------------------------------------------------------- consolidation --------


def consolidate(checkpoint: Path, out: Path, model: str = "model") -> int:
    """Gather the sharded weights of ``model`` in an FSDP checkpoint into one safetensors
    file; returns the number of tensors. Needs no process group."""
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    meta_file = checkpoint / "meta.json"
    if not meta_file.is_file():
        raise UserError(f"{checkpoint} is not a complete checkpoint (no meta.json)")
    meta = json.loads(meta_file.read_text())
    if model not in meta["modules"]:
        raise UserError(f"{checkpoint} has no model {model!r}; it has {sorted(meta['modules'])}")
    if not meta["sharded"]:
        tensors = read_tensors(checkpoint / "models" / f"{model}.safetensors")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            full = Path(tmp) / "full.pt"
            dcp_to_torch_save(str(checkpoint / "dcp"), str(full))
            payload = torch.load(full, weights_only=True)
        tensors = payload[f"model.{model}"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".partial")
    _save_tensors(tensors, tmp_out)
    os.replace(tmp_out, out)
    return len(tensors)
