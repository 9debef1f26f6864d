"""Read a run's measured training rate from MLflow for `genbac explain --calibrate RUN_ID`.

Either backend logs `tokens_per_sec` per training step in the phase-N child runs (the local trainer
times its steps; the cszoo backend converts Model Zoo's samples/s with the plan's sequence length),
and the parent run holds the run's plan.json as an artifact: its FLOPs per token and hardware.
The calculation itself is compiler/calibrate.py.
"""

from __future__ import annotations

from genbac.compiler.plan import Measurement

from .context import RunError


def measure(run_id: str, tracking_uri: str) -> Measurement:
    """The training rate (runs.training_rate: the median tokens/s over the training steps) of run `run_id` (a genbac parent run or one of
    its phase runs by full id; or, as `genbac compare` takes them, a unique prefix of a parent's
    id or a spec hash), with what is needed to turn it into a utilisation."""
    from mlflow.exceptions import MlflowException

    from .runs import (PARENT_TAG, StoreError, experiments, open_store, parent_runs, read_plan,
                       resolve, shown, training_rate)

    try:  # refuses a store that is not there instead of creating an empty one
        client = open_store(tracking_uri)
    except StoreError as exc:
        raise RunError(str(exc)) from None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        try:
            found = resolve(client, run_id, parent_runs(client, experiments(client)))
        except StoreError as exc:
            raise RunError(f"{exc} (in the MLflow store {shown(tracking_uri)}; give another with "
                           "--tracking-uri)") from None
        run_id = found.run_id
        run = client.get_run(run_id)
    parent_id = run.data.tags.get(PARENT_TAG, run_id)
    # a phase's run measures that phase; the parent holds every phase's per-step values too
    rate, steps = training_rate(client, run_id)
    if rate is None:
        raise RunError(f"run {run_id} has no measured training rate (tokens_per_sec in its "
                       "phase runs): calibrate with a genbac run that trained")
    plan = read_plan(client, parent_id)
    if plan is None:
        raise RunError(f"run {parent_id} has no plan.json artifact: it was not made by "
                       "`genbac run`")
    est = plan["estimate"]
    return Measurement(run_id=run_id, experiment=plan["name"], hardware=est["hardware"],
                       count=int(est["count"]), flops_per_token=float(est["flops_per_token"]),
                       tokens_per_sec=rate, steps=steps)
