"""Estimate pass: training FLOPs, time and energy. Estimates, never measurements.

FLOPs per token = 2N (forward) + 2N (backward through activations) + 2N_trainable (weight gradients)
+ 6 · layers · sequence · hidden (attention scores, Kaplan et al.). With everything trainable this is
the familiar 6N plus attention. Time = FLOPs / (devices · peak · assumed utilisation); energy = time ·
devices · assumed power.

Example: Llama-GENBA-10B (9.775B params, 164B tokens at 8,192) on one CS-2 -> ≈1.09e22 FLOPs,
≈67 days, ≈36 MWh (the paper reports 66 days and 35.23 MWh).
"""

from __future__ import annotations

from genbac.spec.ir import Spec

from .hardware import PROFILES
from .plan import Estimate, GrowthPlan, Schedule


def estimate(spec: Spec, growth: GrowthPlan, schedule: Schedule) -> Estimate:
    profile = PROFILES[spec.hardware.kind]
    arch = spec.base.architecture
    n = growth.parameters
    attention = 6 * growth.layers * schedule.sequence * arch.hidden
    per_token = 4 * n + 2 * growth.trainable_parameters + attention
    flops = per_token * schedule.compiled_tokens
    count = spec.hardware.devices
    seconds = flops / (count * profile.peak_flops * profile.utilisation)
    return Estimate.make(
        flops=float(flops), flops_per_token=float(per_token),
        attention_share=attention / (per_token - attention), hardware=profile.kind, count=count,
        peak_flops=profile.peak_flops, utilisation=profile.utilisation, seconds=seconds,
        energy_kwh=seconds / 3600 * count * profile.power_kw, power_kw=profile.power_kw,
        source=profile.source)
