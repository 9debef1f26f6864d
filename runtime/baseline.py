"""The step-0 baseline: the validation loss per language of the model training starts from, the
reference of a continual-pretraining run (how much of a language is forgotten, how much gained).

Both engines evaluate it and record it here, one way: the local trainer at step 0 of phase 1
(runtime/train.py, with the base model before growth beside it), Model Zoo in the cszoo target's
`baseline` step (`cszoo validate_all` of the converted checkpoint, runtime/cszoo_backend.py). It is
logged at BASELINE_STEP on the step's and the parent's run, kept as `baseline.` parameters, and said
in the log and in the parent's genbac.baseline tag. Imports nothing heavy.
"""

from __future__ import annotations

from genbac.compiler.plan import Plan

from . import metrics as names
from .runs import BASELINE_TAG


def baseline_notes(plan: Plan, metrics: dict[str, float],
                   growth_check: dict | None = None) -> list[str]:
    """What the step-0 evaluation says: each language's starting loss, and whether growth kept the
    base model's loss (within 0.1%, or 1% under bf16 autocast) where it should.

    Where only the grown model was evaluated (Model Zoo's validate_all: a second evaluation of the
    base would need its own conversion and a run on the system), `growth_check` says how the
    two compare: the grow step's logit comparison on the CPU (growth_report.json's
    "verification", runtime/grow.py)."""
    starts = {lang.code: metrics[names.val_loss(lang.code)] for lang in plan.spec.languages
              if names.val_loss(lang.code) in metrics}
    if not starts:
        return []
    lines = ["baseline (step 0): validation loss " +
             ", ".join(f"{c} {v:.4f}" for c, v in starts.items())]
    tolerance = 1e-2 if plan.spec.train.precision == "bf16" else 1e-3
    differ = []
    for code, grown in starts.items():
        base = metrics.get(names.base_val_loss(code))
        if base is not None and abs(grown - base) > tolerance * max(1.0, abs(base)):
            differ.append(f"{code} {grown:.4f} grown vs {base:.4f} base")
    if growth_check is not None and not any(names.base_val_loss(c) in metrics for c in starts):
        lines.append(_growth_check_note(growth_check))
    if any(names.base_val_loss(c) in metrics for c in starts):
        if not differ:
            lines.append("baseline: the grown model's validation loss equals the base model's "
                         "(growth preserved the function)")
        elif plan.growth.function_preserving:
            lines.append("warning: the grown model's validation loss differs from the base "
                         f"model's ({'; '.join(differ)}), though this growth should preserve the "
                         "function: check the base weights and work/grown/growth_report.json")
        else:
            lines.append(f"baseline: the grown model starts from another loss than the base "
                         f"({'; '.join(differ)}), as expected of growth that does not preserve "
                         "the function")
    return lines


def _growth_check_note(check: dict) -> str:
    """The grow step's comparison of base and grown logits, in words, for a baseline that has the
    grown model's losses only."""
    difference = (f"max |logit difference| {check['max_abs_diff']:.3g} over {check['tokens']} "
                  "tokens, in the grow step")
    if check.get("function_preserving_expected"):
        verdict = "equals" if check.get("passed") else "does NOT equal"
        return (f"baseline: the base model before growth is not evaluated here; the grown model "
                f"{verdict} its function ({difference})")
    return (f"baseline: the base model before growth is not evaluated here; this growth does not "
            f"preserve the function ({difference})")


def record(ctx, run_id: str, metrics: dict[str, float], growth_check: dict | None = None
           ) -> None:
    """The baseline into the log and MLflow: the step's run and the parent get the metrics at
    BASELINE_STEP; the parent also the parameters and the tag read by `genbac runs` and `compare`."""
    parent = ctx.state["mlflow"]["parent"]
    notes = baseline_notes(ctx.plan, metrics, growth_check)
    for line in notes:
        ctx.log(f"genbac: {line}")
    if notes:
        ctx.tracker.tags(parent, {BASELINE_TAG: notes[-1]})
    ctx.tracker.params(parent, {names.baseline_param(k): repr(v) for k, v in metrics.items()})
    ctx.tracker.metrics(run_id, names.BASELINE_STEP, metrics)
    if parent != run_id:
        ctx.tracker.metrics(parent, names.BASELINE_STEP, metrics)
