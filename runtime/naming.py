"""Names that tell runs apart: a parent run's MLflow name, and the label of each run in
`genbac compare` (its table and plot), both from the spec fields that differ.

The rule, pure and the same everywhere:
- a spec field is named as in the MLflow params (`train.optimizer.lr`,
  `languages.bar.enter.percent`) and shortened for a label: the group prefix goes (`languages.`,
  `train.optimizer.`, `train.`, `base.architecture.`, `base.`), a trailing `.percent` becomes a `%`
  on the value, numbers are written compactly: `lr=0.001`, `bar.enter=50%`;
- a new run is named after the fields that differ from the experiment's previous genbac run
  (`lr=0.001, bar.enter=50%`; past three, `+N more`); the first run of an experiment is named after
  it, and a run of the same spec as the previous run takes that run's name;
- in `compare`, each run is labelled by its values of the fields that differ among the compared
  runs.
"""

from __future__ import annotations

GROUPS = ("languages.", "train.optimizer.", "train.", "base.architecture.", "base.")
NOT_SPEC = ("estimate.", "baseline.")  # params a run adds beside its spec's
SHOWN = 3  # fields in a name; the rest are counted
ABSENT = "none"  # a field one of the specs does not have
LONGEST_VALUE = 40


def spec_fields(params: dict[str, str]) -> dict[str, str]:
    """A run's params without those that are not the spec's (estimates, the baseline)."""
    return {k: v for k, v in params.items() if not k.startswith(NOT_SPEC)}


def differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Field names whose values differ, in `a`'s order, then those only `b` has."""
    return ([k for k in a if a[k] != b.get(k)] + [k for k in b if k not in a])


def label(field: str, value: str | None) -> str:
    """`train.optimizer.lr`, `0.001` -> `lr=0.001`; `languages.bar.enter.percent`, `50.0` ->
    `bar.enter=50%`."""
    key = field
    for group in GROUPS:
        if key.startswith(group) and len(key) > len(group):
            key = key[len(group):]
            break
    if value is None:
        return f"{key.removesuffix('.percent')}={ABSENT}"
    unit = ""
    if key.endswith(".percent"):
        key, unit = key[:-len(".percent")], "%"
    return f"{key}={_compact(value)}{unit}"


def _compact(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        text = value
    else:
        text = f"{number:g}" if value.strip().lower() not in ("nan", "inf", "-inf") else value
    return text if len(text) <= LONGEST_VALUE else text[:LONGEST_VALUE - 1] + "…"


def labels(fields: list[str], values: dict[str, str | None]) -> str:
    """The first SHOWN fields as labels, the rest counted."""
    shown = ", ".join(label(f, values.get(f)) for f in fields[:SHOWN])
    return shown + (f", +{len(fields) - SHOWN} more" if len(fields) > SHOWN else "")


def run_name(experiment: str, spec_hash: str, fields: dict[str, str],
             previous: tuple[str, str, dict[str, str]] | None) -> str:
    """The MLflow name of a new parent run. `fields`: this run's spec as params; `previous`: the
    experiment's latest genbac run as (its name, spec hash, params), or None."""
    if previous is None:
        return experiment
    name, previous_hash, params = previous
    if previous_hash == spec_hash:
        return name
    before = spec_fields(params)
    changed = differing(fields, before)
    return labels(changed, fields) if changed else experiment


def compare_labels(per_run: list[dict[str, str]], fields: list[str]) -> list[str]:
    """Each compared run's values of the fields that differ among them ("" when none do)."""
    return [labels(fields, values) if fields else "" for values in per_run]
