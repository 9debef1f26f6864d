"""The names of the metrics genbac records in MLflow, the one definition: the local trainer and the
Model Zoo log/event bridge write them, `genbac runs`, `compare` and `explain --calibrate` read them.

Per-language metrics are `<group>/<language>` (`loss/en`, `val_loss/bar`, `tokens/de`): MLflow's
UI puts the metrics that share a prefix before the slash in one section of charts, so a run's
languages sit side by side.

Per training step: LOSS, LR, GRAD_NORM, STEP_TIME (seconds), TOKENS_PER_SEC, SAMPLES_PER_SEC
(Model Zoo), loss_of(code) and tokens_of(code) (tokens of that language seen so far). At
validation: val_loss(code) and val_metric(name, code). At step 0, before the first update, the
baseline: val_loss(code) of the model training starts from, and base_val_loss(code) of the base
model before growth. Constants (the plan's estimates) are parameters, never per-step metrics.
"""

from __future__ import annotations

LOSS = "loss"
LR = "lr"
GRAD_NORM = "grad_norm"
STEP_TIME = "step_time_s"
TOKENS_PER_SEC = "tokens_per_sec"
SAMPLES_PER_SEC = "samples_per_sec"
AVG_SAMPLES_PER_SEC = "avg_samples_per_sec"  # Model Zoo's own average
FUNCTION_PRESERVATION = "function_preservation_max_abs_diff"  # the grow step's check

# validation, per language (val_metric(VAL_PERPLEXITY, "en") is "val_perplexity/en")
VAL_LOSS = "val_loss"
VAL_PERPLEXITY = "val_perplexity"  # Model Zoo's eval/lm_perplexity
VAL_ACCURACY = "val_accuracy"  # Model Zoo's eval/accuracy
BASE_VAL_LOSS = "base_val_loss"  # the base model before growth, at step 0

TOKENS = "tokens"
BASELINE_STEP = 0  # the baseline evaluation is logged at this step, before the first update
BASELINE_PARAM = "baseline."  # ... and kept as parameters (baseline.val_loss/en), read at a glance


def per_language(group: str, code: str) -> str:
    return f"{group}/{code}"


def loss_of(code: str) -> str:
    return per_language(LOSS, code)


def tokens_of(code: str) -> str:
    return per_language(TOKENS, code)


def val_loss(code: str) -> str:
    return per_language(VAL_LOSS, code)


def base_val_loss(code: str) -> str:
    return per_language(BASE_VAL_LOSS, code)


def val_metric(name: str, code: str) -> str:
    """Another validation metric of a language (e.g. val_perplexity)."""
    return per_language(name, code)


def split(key: str) -> tuple[str, str] | None:
    """(group, language) of a per-language metric name; None for any other."""
    group, slash, code = key.partition("/")
    return (group, code) if slash and code and "/" not in code else None


def baseline_param(key: str) -> str:
    return f"{BASELINE_PARAM}{key}"
