"""Calibration: the estimate redone with a measured training rate instead of an assumed utilisation.

The plan's estimate assumes a model-FLOPs utilisation per hardware profile (compiler/hardware.py).
A run measures tokens per second. With the FLOPs per token of the run's model (its plan: 6N-style
count plus attention at its sequence length) that rate implies a utilisation,

    utilisation = tokens/s x FLOPs per token / (devices x peak FLOP/s),

which carries over to another model on the same hardware far better than tokens/s does. The
calibrated estimate is then the spec's FLOPs at that utilisation, and its energy at the profile's
power. For a run of the same spec this is simply tokens / measured tokens per second.

Pure: the measurement comes in as numbers (runtime/calibrate.py reads it from MLflow).
"""

from __future__ import annotations

from typing import NamedTuple

from .hardware import PROFILES
from .plan import Estimate, Measurement


class Calibrated(NamedTuple):
    utilisation: float  # implied by the measurement
    seconds: float
    energy_kwh: float
    same_hardware: bool


def implied_utilisation(tokens_per_sec: float, flops_per_token: float, peak_flops: float,
                        count: int) -> float:
    return tokens_per_sec * flops_per_token / (count * peak_flops)


def calibrate(estimate: Estimate, m: Measurement) -> Calibrated:
    if m.tokens_per_sec <= 0 or m.flops_per_token <= 0:
        raise ValueError("a calibration needs a positive measured rate and FLOPs per token")
    profile = PROFILES[m.hardware]
    u = implied_utilisation(m.tokens_per_sec, m.flops_per_token, profile.peak_flops, m.count)
    seconds = estimate.flops / (estimate.count * estimate.peak_flops * u)
    return Calibrated(utilisation=u, seconds=seconds,
                      energy_kwh=seconds / 3600 * estimate.count * estimate.power_kw,
                      same_hardware=m.hardware == estimate.hardware)


def render(estimate: Estimate, m: Measurement, c: Calibrated, *, markdown: bool = False) -> str:
    """The assumed and the calibrated estimate side by side, each labelled."""
    from .explain import _table, duration, energy

    h = "### " if markdown else ""
    measured = (f"run {m.run_id} ({m.experiment}, {m.hardware} x {m.count}): median "
                f"{m.tokens_per_sec:,.4g} tokens/s over {m.steps} training steps")
    rows = [
        ["utilisation", f"{estimate.utilisation:.3g}", f"{c.utilisation:.3g}"],
        ["time", duration(estimate.seconds), duration(c.seconds)],
        ["energy", energy(estimate.energy_kwh), energy(c.energy_kwh)],
    ]
    out = [f"{h}Calibrated estimate (measured rate)", "",
           ("- " if markdown else "") + f"Measured: {measured}."]
    if not c.same_hardware:
        out.append(("- " if markdown else "") +
                   f"The run trained on {m.hardware}, this spec targets {estimate.hardware}: "
                   f"the implied utilisation is carried over to {estimate.hardware}'s peak, a "
                   "rough transfer.")
    out.append("")
    out += _table(["", "assumed (profile)", "calibrated (measured rate)"], rows, markdown, "lrr")
    return "\n".join(out) + "\n"
