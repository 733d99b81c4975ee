"""vq.generators: class-to-image proposal networks over token grids and their samplers.

Autoregressive (AR): ``Llama`` / ``GPT2`` built by ``build_proposal_network``, trained with
``next_token_loss``, sampled by ``generate`` (KV cache). Non-autoregressive (NAR, MaskGIT /
MAGE): ``MaskGIT`` built by ``build_masked_network``, trained with ``mask_batch`` +
``masked_token_loss``, sampled by ``parallel_decode``.
"""

from vq.generators.config import (
    MaskedNetworkConfig,
    ProposalNetworkConfig,
    build_masked_network,
    build_proposal_network,
)
from vq.generators.gpt2 import GPT2, GPT2Config, load_hf_gpt2
from vq.generators.kv_cache import KVCache
from vq.generators.llama import Llama, LlamaConfig
from vq.generators.maskgit import MaskGIT, MaskGITConfig
from vq.generators.masking import (
    MaskedBatch,
    MaskedTokenNetwork,
    cosine_mask_ratio,
    mask_batch,
    masked_counts,
    masked_token_accuracy,
    masked_token_loss,
    random_mask,
)
from vq.generators.network import ProposalNetwork
from vq.generators.parallel_decoding import parallel_decode, reveal_schedule
from vq.generators.sampling import (
    Generators,
    generate,
    sample_from_logits,
    sampled_token_accuracy,
    top_k_filter,
    top_p_filter,
    uniforms,
)
from vq.generators.sequence import (
    SequenceLayout,
    drop_labels,
    next_token_loss,
    token_accuracy,
)

__all__ = [
    "GPT2",
    "GPT2Config",
    "Generators",
    "KVCache",
    "Llama",
    "LlamaConfig",
    "MaskGIT",
    "MaskGITConfig",
    "MaskedBatch",
    "MaskedNetworkConfig",
    "MaskedTokenNetwork",
    "ProposalNetwork",
    "ProposalNetworkConfig",
    "SequenceLayout",
    "build_masked_network",
    "build_proposal_network",
    "cosine_mask_ratio",
    "drop_labels",
    "generate",
    "load_hf_gpt2",
    "mask_batch",
    "masked_counts",
    "masked_token_accuracy",
    "masked_token_loss",
    "next_token_loss",
    "parallel_decode",
    "random_mask",
    "reveal_schedule",
    "sample_from_logits",
    "sampled_token_accuracy",
    "token_accuracy",
    "top_k_filter",
    "top_p_filter",
    "uniforms",
]
