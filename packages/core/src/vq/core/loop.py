"""The generic iteration-based training loop and the run context trainers build on.

A family trainer is a plain class composed from these pieces, not a subclass of a base
trainer with hooks::

    class MyTrainer:
        def __init__(self, config: MyRunConfig, run: Run):
            model = run.prepare("model", build_model(config.model))   # device, weights, DDP/FSDP
            self.model = model
            self.opt = run.optimization("model", model, model.parameters(), config.optimization)
            self.dataset = build_dataset(config.data, "train")

        def step(self, batch, iteration) -> dict[str, Tensor]:        # one micro-batch
            with self.opt.accumulate():
                with run.autocast():
                    loss = ...
                self.opt.backward(loss)
            return {"loss": loss, **self.opt.step(iteration)}

        def visuals(self, batch) -> dict[str, Tensor]:               # optional image rows
            ...

``train(run, trainer)`` then owns data loading, resuming, logging, TensorBoard, image grids,
checkpoints and the NaN guard.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from vq.core import amp, distributed
from vq.core.checkpoint import (
    Checkpointer,
    Tracked,
    TrainingState,
    latest_checkpoint,
)
from vq.core.compiling import compile_module
from vq.core.config import Config
from vq.core.configfile import fingerprint
from vq.core.data import LoaderConfig, build_loader, per_rank_batch_size
from vq.core.errors import UserError
from vq.core.logging import (
    LOGGER,
    TensorBoard,
    format_duration,
    format_scalars,
    image_grid,
    progress,
    save_png,
)
from vq.core.logwindow import LogWindow
from vq.core.optim import Optimization, OptimizationConfig
from vq.core.parallel import StrategyConfig, wrap
from vq.core.runlock import check_free
from vq.core.tensorfiles import check_readable, load_weights, weights_file


class LoopConfig(Config):
    iters: int
    log_interval: int = 50
    visual_interval: int = 500
    checkpoint_interval: int = 10_000
    keep_last: int | None = None
    """Keep only the newest K checkpoints (None keeps all)."""
    accumulation: int = 1
    """Micro-batches per optimizer step (each of the loader's batch size)."""


class RunConfig(Config):
    """Fields every experiment has; family configs add model, data and optimizers."""

    trainer: str
    """Entry point name in group ``vq.trainers``."""
    loop: LoopConfig
    loader: LoaderConfig = LoaderConfig()
    strategy: StrategyConfig = StrategyConfig()


def run_fingerprint(config: RunConfig) -> str:
    """Identity of a run for resuming: the config without ``loop`` and loader performance
    settings, which a resumed run may change (e.g. train for more iterations)."""
    stable = config.model_copy(update={"loop": LoopConfig(iters=0)})
    stable.loader = stable.loader.model_copy(
        update={
            "workers": 0,
            "pin_memory": False,
            "persistent_workers": False,
            "prefetch_factor": 2,
        }
    )
    return fingerprint(stable)


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the run stops, its last checkpoint is intact."""


@dataclass
class Run:
    """What a trainer needs from the command line and the process: device, precision,
    weights to load, the strategy, and the registry of state that checkpoints hold."""

    config: RunConfig
    work_dir: Path
    device: torch.device
    seed: int
    autocast_enabled: bool = False
    compile_enabled: bool = False
    """``--compile``: ``prepare`` compiles each model's forward (``vq.core.compiling``)."""
    channels_last: bool = False
    """``--channels-last``: ``prepare`` and ``place`` store 4-d weights in channels_last
    (DDP or one process only; checkpoints are contiguous either way)."""
    load_model_from: list[Path] = field(default_factory=list)
    resume_from: Path | None = None
    state: TrainingState = field(default_factory=TrainingState)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return amp.autocast(self.device, self.autocast_enabled)

    def prepare(
        self, name: str, module: nn.Module, *, exclude: Iterable[str] = (), load: bool = True
    ) -> nn.Module:
        """Move ``module`` to the device, load ``--load-model-from`` weights into it (the
        model named ``model`` only), wrap it for the strategy and track it for checkpoints.

        ``exclude`` names frozen sub-modules (prefixes of state-dict keys) that checkpoints
        leave out; they must come from ``--load-model-from`` or their own pretrained files.
        With ``--compile`` the forward is compiled in place before wrapping (state-dict keys
        unchanged, so checkpoints are the same with and without it).
        """
        self.place(module)
        if load and name == "model" and self.load_model_from:
            report = load_weights(module, self.load_model_from)
            LOGGER.info("--load-model-from into %s: %s", name, report.summary())
        if self.compile_enabled:
            compile_module(module)
        dtype = amp.autocast_dtype(self.device) if self.autocast_enabled else None
        wrapped = wrap(module, self.config.strategy, self.device, param_dtype=dtype)
        self.state.modules[name] = Tracked(wrapped, tuple(exclude))
        return wrapped

    def place(self, module: nn.Module) -> nn.Module:
        """``module`` on the device, in channels_last with ``--channels-last`` (for frozen
        convolutional parts that ``prepare`` does not track, such as the LPIPS trunk)."""
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)  # 4-d tensors only
        return module

    def optimization(
        self,
        name: str,
        module: nn.Module,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        config: OptimizationConfig,
        ema_module: nn.Module | None = None,
    ) -> Optimization:
        """An ``Optimization`` for ``module`` registered for checkpoints under ``name``."""
        opt = Optimization(
            name,
            module,
            params,
            config,
            total_iters=self.config.loop.iters,
            accumulation=self.config.loop.accumulation,
            grad_scaler=amp.needs_grad_scaler(self.device, self.autocast_enabled),
            ema_module=ema_module,
        )
        self.state.optimizations[name] = opt
        return opt


class Trainer(Protocol):
    dataset: Dataset[Any]

    def step(self, batch: Any, iteration: int) -> dict[str, torch.Tensor | float]: ...


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class _Batches:
    """Endless batches across epochs, positioned from the loop state (resumable)."""

    def __init__(self, trainer: Trainer, run: Run) -> None:
        collate: Callable[[list[Any]], Any] | None = getattr(trainer, "collate", None)
        self.loader, self.sampler = build_loader(
            trainer.dataset, run.config.loader, seed=run.seed, device=run.device, collate_fn=collate
        )
        self.global_batch = per_rank_batch_size(run.config.loader, distributed.world_size())
        self.global_batch *= distributed.world_size()
        self.loop = run.state.loop
        self.iterator: Iterator[Any] | None = None

    def next(self) -> Any:
        while True:
            if self.iterator is None:
                world = distributed.world_size()
                self.sampler.start(self.loop["epoch"], self.loop["samples_in_epoch"] // world)
                self.iterator = iter(self.loader)
            try:
                batch = next(self.iterator)
            except StopIteration:
                self.iterator = None
                self.loop["epoch"] += 1
                self.loop["samples_in_epoch"] = 0
                continue
            self.loop["samples_in_epoch"] += self.global_batch
            return batch


def train(run: Run, trainer: Trainer) -> dict[str, float]:
    """Train ``trainer`` for ``run.config.loop.iters`` iterations; returns the last logs."""
    cfg = run.config.loop
    state = run.state
    state.loop.update(iteration=0, epoch=0, samples_in_epoch=0)
    checkpoints = Checkpointer(
        run.work_dir / "checkpoints",
        fingerprint=run_fingerprint(run.config),
        strategy=run.config.strategy.kind,
        keep_last=cfg.keep_last,
    )
    if run.resume_from is not None:
        meta = checkpoints.load(state, run.resume_from)
        LOGGER.info("resumed from %s (iteration %d)", run.resume_from, meta["iteration"])
    batches = _Batches(trainer, run)
    board = TensorBoard(run.work_dir / "tensorboard")
    visuals: Callable[[Any], dict[str, torch.Tensor]] | None = getattr(trainer, "visuals", None)
    start = state.loop["iteration"]
    if start >= cfg.iters:
        LOGGER.info("nothing to do: already at iteration %d of %d", start, cfg.iters)
    bar = progress(cfg.iters, desc="train", unit="it", initial=start)
    window = LogWindow(run.device)
    checked = start  # the last iteration whose values were checked to be finite
    tic = time.perf_counter()
    logs: dict[str, float] = {}
    iteration = start
    try:
        for iteration in range(start + 1, cfg.iters + 1):
            for _ in range(cfg.accumulation):
                batch = to_device(batches.next(), run.device)
                window.add(trainer.step(batch, iteration))
            # mean over the micro-batches that reported each value (lr: only the last one)
            window.end_iteration(iteration)
            state.loop["iteration"] = iteration
            bar.update(1)
            if iteration % cfg.log_interval == 0 or iteration == cfg.iters:
                means, bad = window.read()  # the one host read of the interval
                _stop_if_bad(window, bad, checkpoints)
                checked = iteration
                logs = _reduce(means)
                elapsed = time.perf_counter() - tic
                speed = len(window.iterations) / elapsed if elapsed > 0 else float("nan")
                eta = (cfg.iters - iteration) / speed if speed > 0 else float("nan")
                memory = _memory_mib(run.device)
                LOGGER.info(
                    "iter %d/%d | eta %s | %.2f it/s | mem %s | %s",
                    iteration,
                    cfg.iters,
                    format_duration(eta),
                    speed,
                    f"{memory:.0f}M" if memory is not None else "-",
                    format_scalars(logs),
                )
                board.scalars("train", {**logs, "it_per_s": speed}, iteration)
                window.reset()
                tic = time.perf_counter()
            if visuals is not None and (
                iteration % cfg.visual_interval == 0 or iteration == cfg.iters
            ):
                _save_visuals(run, board, visuals, batch, iteration)
            if iteration % cfg.checkpoint_interval == 0 or iteration == cfg.iters:
                if checked != iteration:  # a NaN never reaches a checkpoint
                    _stop_if_bad(window, window.first_bad(), checkpoints)
                    checked = iteration
                path = checkpoints.save(state, iteration)
                LOGGER.info("saved checkpoint %s", path)
    finally:
        bar.close()
        board.close()
    return logs


def _stop_if_bad(window: LogWindow, bad: int, checkpoints: Checkpointer) -> None:
    """NonFiniteLossError naming iteration ``bad`` and what it logged, unless ``bad`` is 0."""
    if not bad:
        return
    previous = latest_checkpoint(checkpoints.directory)
    kept = f"; last good checkpoint: {previous}" if previous else ""
    raise NonFiniteLossError(
        f"non-finite values at iteration {bad}: {format_scalars(window.logged_at(bad))}{kept}"
    )


def _reduce(values: dict[str, float]) -> dict[str, float]:
    """Mean of each logged value over ranks."""
    if distributed.world_size() == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    distributed.all_reduce_(t, "mean")
    return dict(zip(keys, t.tolist()))


def _memory_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return peak


@torch.no_grad()
def _save_visuals(
    run: Run,
    board: TensorBoard,
    visuals: Callable[[Any], dict[str, torch.Tensor]],
    batch: Any,
    iteration: int,
) -> None:
    rows = visuals(batch)
    if not rows or not distributed.is_main():
        return
    grid = image_grid(rows)
    save_png(grid, run.work_dir / "visuals" / f"iter_{iteration}.png")
    board.image("train/" + "|".join(rows), grid, iteration)


def check_launch(
    config: RunConfig, work_dir: Path, resume_from: Path | None, load_model_from: list[Path]
) -> None:
    """Every refusal a launch can know before building a model, checked before anything is
    written into ``work_dir`` (so a refused command leaves the run's files as they were):
    another live launch of the same run, weights files that do not read, a checkpoint of another config or a damaged one, and a
    work dir that cannot be written."""
    check_free(work_dir)
    for path in load_model_from:
        check_readable(weights_file(Path(path)))
    if resume_from is not None:
        Checkpointer(
            work_dir / "checkpoints",
            fingerprint=run_fingerprint(config),
            strategy=config.strategy.kind,
        ).verify(resume_from)
    check_writable(work_dir)


def check_writable(directory: Path) -> None:
    """UserError unless ``directory`` exists and takes a file, or can be created."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot create work dir {directory}: {existing} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".vq-write-probe-"):
            pass
    except OSError as error:
        raise UserError(
            f"work dir {directory} is not writable: {error.strerror} (in {existing})"
        ) from None


def resolve_resume(work_dir: Path, load_from: Path | None, auto_resume: bool) -> Path | None:
    """The checkpoint to resume from: ``latest`` with ``--auto-resume`` (if any), else
    ``--load-from``."""
    if auto_resume:
        found = latest_checkpoint(work_dir / "checkpoints")
        if found is not None:
            return found
        if load_from is None:
            LOGGER.info("--auto-resume: no checkpoint in %s, starting fresh", work_dir)
    if load_from is not None and not load_from.is_dir():
        raise UserError(f"--load-from {load_from}: no such checkpoint directory")
    return load_from
