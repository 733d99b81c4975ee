"""Codebook usage, entropy and perplexity of a whole evaluation set.

The histogram itself is the quantizers' ``CodebookHistogram`` (one implementation for the
training logs and the evaluation commands); this module adds the evaluation-side step:
summing the counts of every rank once and reporting plain floats under the metric names
``codebook_usage``, ``codebook_entropy`` (nats; the reference logs this number as
``codebook_ppl``) and ``codebook_perplexity`` (exp of the entropy).
"""

from __future__ import annotations

from vq.tokenizers.quantizers import CodebookHistogram

__all__ = ["CodebookHistogram", "codebook_metrics"]


def codebook_metrics(histogram: CodebookHistogram) -> dict[str, float]:
    """Summaries of the counts of every rank (a collective: call it on all ranks).

    The all-reduce runs on a copy, so ``histogram`` keeps its per-rank counts and calling
    this twice does not count any code twice.
    """
    total = CodebookHistogram(histogram.num_codes, device=histogram.counts.device)
    total.counts.copy_(histogram.counts)
    total.all_reduce()
    return {name: float(value) for name, value in total.summaries().items()}
