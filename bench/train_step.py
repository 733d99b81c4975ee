"""Seconds per full VQGAN training iteration (generator + discriminator step) on CPU, and
the share of it spent in LPIPS and in the discriminator.

    uv run python bench/train_step.py                       # batch 1 and 2, 2 timed steps each
    uv run python bench/train_step.py --batch-sizes 1 --steps 3 --threads 2

The trainer is the one of ``configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py`` (taming f16,
8192 x 256 codes, PatchGAN depth 2, L1 + LPIPS + adaptive hinge GAN), at 256 px, with the
discriminator on from the first iteration. LPIPS gets random VGG16 / lin weights written to a
temporary folder (the cost does not depend on the values), and the images are 256 px crops
of the embedded photos, so nothing needs downloading.

Each part is timed on its own, with the same tensors a training step uses:

* ``step``: ``VQGANTrainer.step``, i.e. ``GANStep.step`` (one autoencoder forward, generator backward and Adam step,
  discriminator step), the median over ``--steps`` iterations after one warm-up;
* ``lpips``: LPIPS forward + backward to the reconstruction (what the generator step pays);
* ``disc``: the generator's GAN term (frozen discriminator forward + backward to the
  reconstruction) plus the whole discriminator step (real and fake forwards, backward, Adam);
* ``rest``: ``step - lpips - disc``: encoder, quantizer, decoder, their backward, the
  adaptive weight and the generator's Adam step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vq.core.configfile import load_config
from vq.core.loop import Run
from vq.core.parallel import unwrap
from vq.tokenizers.losses.vgg16 import TAP_CHANNELS, VGG16Features
from vq.train.data import PhotosConfig, collate
from vq.train.gan_step import frozen
from vq.train.trainers.vqgan import VQGANRunConfig, VQGANTrainer

CONFIG = Path(__file__).resolve().parents[1] / "configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py"


def random_lpips_files(folder: Path) -> dict[str, Path]:
    trunk = VGG16Features()
    for name, buffer in trunk.named_buffers():
        if name.endswith("weight"):
            torch.nn.init.kaiming_normal_(buffer, mode="fan_out", nonlinearity="relu")
        else:
            buffer.zero_()
    torch.save(dict(trunk.named_buffers()), folder / "vgg16.pth")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(TAP_CHANNELS)}
    torch.save(heads, folder / "vgg_lin.pth")
    return {"vgg_path": folder / "vgg16.pth", "lin_path": folder / "vgg_lin.pth"}


def bench_config(lpips_files: dict[str, Path], batch_size: int) -> VQGANRunConfig:
    config = load_config(CONFIG, {"batch_size": batch_size, "workers": 0})
    rec = config.reconstruction
    return config.model_copy(
        update={
            "data": PhotosConfig(image_size=256, augmentation="strong"),
            "reconstruction": rec.model_copy(
                update={"lpips": rec.lpips.model_copy(update=lpips_files)}
            ),
        }
    )


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    lpips_files: dict[str, Path], batch_size: int, steps: int, work: Path
) -> dict[str, float]:
    torch.manual_seed(0)
    config = bench_config(lpips_files, batch_size)
    run = Run(config=config, work_dir=work, device=torch.device("cpu"), seed=0)
    trainer = VQGANTrainer(config, run)
    batch = collate([trainer.dataset[i] for i in range(batch_size)])
    image = batch["image"]  # (B, 3, 256, 256)
    iteration = iter(range(1, 10_000))

    step = median_seconds(lambda: trainer.step(batch, next(iteration)), steps)

    with torch.no_grad():
        fake = unwrap(trainer.model)(image).reconstruction  # (B, 3, 256, 256)
    lpips = trainer.gan.reconstruction_loss.lpips

    def lpips_pass() -> None:
        reconstruction = fake.clone().requires_grad_(True)
        lpips(reconstruction, image).mean().backward()

    def discriminator_pass() -> None:
        reconstruction = fake.clone().requires_grad_(True)
        raw = unwrap(trainer.gan.discriminator)
        with frozen(raw):
            (-raw(reconstruction).mean()).backward()
        trainer.gan.discriminator_step(image, fake, next(iteration))

    return {
        "step": step,
        "lpips": median_seconds(lpips_pass, steps),
        "disc": median_seconds(discriminator_pass, steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=2, help="timed repeats after a warm-up")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = random_lpips_files(Path(tmp))
        for batch_size in args.batch_sizes:
            rows.append((batch_size, measure(files, batch_size, args.steps, Path(tmp) / "work")))

    print(f"VQGAN 8192_dd2_aglwg075 train step, 256 px, CPU, {args.threads} thread(s)")
    print(
        f"{'batch':>5} {'s/iter':>8} {'lpips s':>8} {'lpips %':>8} {'disc s':>8} {'disc %':>7} {'rest s':>8} {'rest %':>7}"
    )
    for batch_size, t in rows:
        rest = t["step"] - t["lpips"] - t["disc"]
        share = {
            k: 100 * v / t["step"]
            for k, v in (("lpips", t["lpips"]), ("disc", t["disc"]), ("rest", rest))
        }
        print(
            f"{batch_size:>5} {t['step']:>8.2f} {t['lpips']:>8.2f} {share['lpips']:>7.1f}% "
            f"{t['disc']:>8.2f} {share['disc']:>6.1f}% {rest:>8.2f} {share['rest']:>6.1f}%"
        )
    if len(rows) > 1:
        (b0, t0), (b1, t1) = rows[0], rows[-1]
        print(
            f"time per image, batch {b1} vs batch {b0}: {t1['step'] / b1 / (t0['step'] / b0):.2f}x"
        )


if __name__ == "__main__":
    main()
