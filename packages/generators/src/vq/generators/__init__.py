"""vq.generators: autoregressive class-to-image proposal networks, samplers, KV cache."""

from vq.generators.config import ProposalNetworkConfig, build_proposal_network
from vq.generators.gpt2 import GPT2, GPT2Config, load_hf_gpt2
from vq.generators.kv_cache import KVCache
from vq.generators.llama import Llama, LlamaConfig
from vq.generators.network import ProposalNetwork
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
    "ProposalNetwork",
    "ProposalNetworkConfig",
    "SequenceLayout",
    "build_proposal_network",
    "drop_labels",
    "generate",
    "load_hf_gpt2",
    "next_token_loss",
    "sample_from_logits",
    "sampled_token_accuracy",
    "token_accuracy",
    "top_k_filter",
    "top_p_filter",
    "uniforms",
]
