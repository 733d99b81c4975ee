"""``python -m vq.train NAME CONFIG [options]``: the same command as ``train``."""

from vq.train.cli import main

main()
