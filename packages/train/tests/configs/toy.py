"""Config of the toy trainers used by the loop and resume tests."""

from toy_trainers import toy_config


def config(
    iters: int = 12,
    batch_size: int = 8,
    accumulation: int = 1,
    checkpoint_interval: int = 4,
    strategy: str = "ddp",
    trainer: str = "toy_trainers:ToyTrainer",
    sleep: float = 0.0,
    keep_last: int | None = None,
    dropout: float = 0.1,
    samples: int = 37,
):
    return toy_config(
        iters,
        batch_size,
        accumulation,
        checkpoint_interval,
        strategy,
        trainer,
        sleep,
        keep_last,
        dropout,
        samples,
    )
