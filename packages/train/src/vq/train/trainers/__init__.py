"""Per-family trainers, each registered in group ``vq.trainers``."""
