"""The names of the metrics genbac records in MLflow, the one definition: the local trainer and the
Model Zoo log/event bridge write them, `genbac runs`, `compare` and `explain --calibrate` read them.

Per training step: LOSS, LR, GRAD_NORM, STEP_TIME (seconds), ESTIMATED_STEP_TIME (the plan's),
TOKENS_PER_SEC, SAMPLES_PER_SEC (Model Zoo), loss_of(code) and tokens_of(code) (tokens of that
language seen so far). At validation: val_loss(code) and val_metric(name, code).
"""

from __future__ import annotations

LOSS = "loss"
LR = "lr"
GRAD_NORM = "grad_norm"
STEP_TIME = "step_time_s"
ESTIMATED_STEP_TIME = "estimated_step_time_s"
TOKENS_PER_SEC = "tokens_per_sec"
SAMPLES_PER_SEC = "samples_per_sec"
AVG_SAMPLES_PER_SEC = "avg_samples_per_sec"  # Model Zoo's own average
FUNCTION_PRESERVATION = "function_preservation_max_abs_diff"  # the grow step's check

# validation, per language (val_metric(VAL_PERPLEXITY, "en") is "val_perplexity_en")
VAL_LOSS = "val_loss"
VAL_PERPLEXITY = "val_perplexity"  # Model Zoo's eval/lm_perplexity
VAL_ACCURACY = "val_accuracy"  # Model Zoo's eval/accuracy

TOKENS_PREFIX = "tokens_"
VAL_LOSS_PREFIX = f"{VAL_LOSS}_"


def loss_of(code: str) -> str:
    return f"loss_{code}"


def tokens_of(code: str) -> str:
    return f"{TOKENS_PREFIX}{code}"


def val_loss(code: str) -> str:
    return f"{VAL_LOSS_PREFIX}{code}"


def val_metric(name: str, code: str) -> str:
    """Another validation metric of a language (e.g. val_perplexity)."""
    return f"{name}_{code}"


def is_tokens_of_language(key: str) -> bool:
    return key.startswith(TOKENS_PREFIX) and key != TOKENS_PER_SEC
