"""Spec -> Plan: run the compiler passes in order and collect their diagnostics.

    plan(spec) = growth -> schedule -> checks -> estimate -> hash

Every pass is a pure function of the Spec and of the passes before it; none does I/O.
"""

from __future__ import annotations

from genbac import __version__
from genbac.spec.diagnostics import Diagnostic, SpecError
from genbac.spec.ir import Spec

from .checks import check_hardware, check_training
from .estimate import estimate
from .growth import plan_growth
from .parallelism import plan_parallelism
from .plan import Plan
from .schedule import solve_schedule
from .spec_hash import spec_hash


def plan(spec: Spec) -> tuple[Plan, list[Diagnostic]]:
    """The Plan and the warnings; raises SpecError with every error found."""
    diagnostics: list[Diagnostic] = []
    growth, found = plan_growth(spec)
    diagnostics += found
    schedule, found = solve_schedule(spec)
    diagnostics += found
    diagnostics += check_hardware(spec, growth)
    parallelism, found = plan_parallelism(spec, growth)
    diagnostics += found
    diagnostics += check_training(spec, schedule)
    if growth is None or schedule is None or any(d.is_error for d in diagnostics):
        raise SpecError(diagnostics)
    train = spec.train
    tokenizer = spec.tokenizer
    weights = spec.base.weights
    if tokenizer is None:
        tokenizer = weights  # a released model ships its tokenizer beside its weights
    return Plan.make(
        genbac_version=__version__,
        spec_hash=spec_hash(spec),
        name=spec.name,
        spec=spec,
        architecture=spec.base.architecture,
        growth=growth,
        schedule=schedule,
        estimate=estimate(spec, growth, schedule),
        checkpoint_every=train.checkpoint_every,
        eval_every=train.eval_every or train.checkpoint_every,
        tokenizer=None if spec.tokenizer_training else tokenizer,
        tokenizer_training=spec.tokenizer_training.vocab if spec.tokenizer_training else None,
        base_weights=weights,
        parallelism=parallelism,
    ), diagnostics
