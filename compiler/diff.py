"""`genbac diff`: what changed between two experiments, and what follows from it.

Two comparisons of two Plans, each a pure function:

    causes        the Spec (IR) of each side, field by field: what the author changed
    consequences  the Plans: steps, phases, mixtures, layers, parameters and estimates that moved

Example: moving Bavarian's entry in the GENBA spec from 90% to 85% gives the cause
`bar: enters at 85% (was 90%)` and the consequences `Bavarian now spread over 24.6B tokens of
training instead of 16.4B`, `phase 2 grows from 4,171 to 6,256 steps`, …; parameters and the
estimated time stay as they were.

Every change is a `Change` with a stable key (`language.bar.enter`, `phase.2.steps`), the old and
new values as JSON, and one sentence; the renderers (text, Markdown, JSON) only arrange them.
Numbers get as many significant digits (at least 3) as the size of their difference needs.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, NamedTuple

from genbac.spec.ir import Model, Spec

from .explain import (describe_growth, describe_lr_schedule, describe_optimizer, duration, energy,
                      layer_diagram)
from .plan import Phase, Plan
from .schedule import fmt_tokens


class Change(NamedTuple):
    kind: str  # "cause": the spec says something else; "consequence": the plan came out different
    key: str  # stable address of what changed, e.g. "language.bar.enter" or "phase.2.steps"
    old: Any  # JSON value; None where the side has no such thing
    new: Any
    text: str  # one plain sentence


class Report(NamedTuple):
    """Everything a renderer needs: the two sides, the verdict, the changes."""

    old_source: str
    new_source: str
    old_hash: str
    new_hash: str
    identical_text: bool  # the spec and every file it imports, byte for byte
    changes: tuple[Change, ...]
    unchanged: tuple[str, ...]  # headline facts that stayed, e.g. "parameters 9,775,157,248"

    @property
    def same_experiment(self) -> bool:
        return self.old_hash == self.new_hash


def compare(old: Plan, new: Plan, *, old_source: str, new_source: str,
            identical_text: bool = False) -> Report:
    changes = () if old.spec_hash == new.spec_hash else tuple(diff_plans(old, new))
    return Report(old_source, new_source, old.spec_hash, new.spec_hash, identical_text, changes,
                  tuple(unchanged(old, new)))


def diff_plans(old: Plan, new: Plan) -> list[Change]:
    """The causes (spec changes) first, then their consequences (plan changes), in reading order."""
    return spec_changes(old, new) + plan_changes(old, new)


# --------------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------------

def _tokens(n: float, digits: int = 3) -> str:
    """Token counts in a diff: 3 significant digits unless `_apart` asks for more."""
    return fmt_tokens(n, digits)


def _percent(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}%"


def _apart(old: float, new: float, fmt: Callable[[float, int], str]) -> tuple[str, str]:
    """`fmt` with as many significant digits (at least 3) as reach the size of the difference:
    19,950,014,464 and 19,949,490,176 are 19.95B and 19.9495B, not 20B and 19.9B."""
    digits = 3
    if old != new:
        largest = max(abs(old), abs(new))
        digits = max(3, math.floor(math.log10(largest)) - math.floor(math.log10(abs(new - old)))
                     + 1)
    return fmt(old, digits), fmt(new, digits)


def _count(n: int) -> str:
    return f"{n:,}"


def _relative(old: float, new: float) -> str:
    if not old:
        return "new"
    change = (new - old) / old
    return f"{change:+.1%}" if abs(change) >= 0.0005 else f"{100 * change:+.2g}%"


def _value(v: Any) -> str:
    """A spec value as a reviewer would write it."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]" if v else "none"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _json(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_json()
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value


def _same(a: Model | None, b: Model | None) -> bool:
    """Equal in meaning: models compare their spans too, which a moved line changes."""
    return _json(a) == _json(b)


# --------------------------------------------------------------------------------------------------
# causes: the spec
# --------------------------------------------------------------------------------------------------

def spec_changes(old_plan: Plan, new_plan: Plan) -> list[Change]:
    o, n = old_plan.spec, new_plan.spec
    out: list[Change] = []

    def cause(key, old, new, text):
        out.append(Change("cause", key, _json(old), _json(new), text))

    if o.name != n.name:
        cause("name", o.name, n.name, f'experiment name: "{o.name}" → "{n.name}"')
    out += _base_changes(o, n)
    out += _growth_changes(old_plan, new_plan)
    if not _same(o.vocab, n.vocab):
        a = f"+{o.vocab.add:,} tokens" if o.vocab else "none"
        b = f"+{n.vocab.add:,} tokens" if n.vocab else "none"
        cause("vocab", o.vocab, n.vocab, f"vocabulary extension: {a} → {b}")
    if o.tokenizer != n.tokenizer:
        default = "the base weights’"
        cause("tokenizer", o.tokenizer, n.tokenizer,
              f"tokenizer: {o.tokenizer or default} → {n.tokenizer or default}")
    if not _same(o.tokenizer_training, n.tokenizer_training):
        a, b = (f"bpe(vocab = {t.vocab:,})" if t else "none"
                for t in (o.tokenizer_training, n.tokenizer_training))
        cause("tokenizer_training", o.tokenizer_training, n.tokenizer_training,
              f"trained tokenizer: {a} → {b}")
    out += _language_changes(o, n)
    out += _mixture_changes(o, n)
    out += _train_changes(o, n)
    if not _same(o.hardware, n.hardware):
        cause("hardware", o.hardware, n.hardware,
              f"hardware: {o.hardware.describe()} → {n.hardware.describe()}")
    out += _uncovered(o, n)
    return out


def _base_changes(o: Spec, n: Spec) -> list[Change]:
    out = []
    a, b = o.base.architecture, n.base.architecture
    if a.name != b.name:
        out.append(Change("cause", "base.architecture", a.name, b.name,
                          f"base model: {a.name} → {b.name}"))
    else:
        for field, x, y in _field_diffs(a, b, skip={"name", "builtin"}):
            out.append(Change("cause", f"base.architecture.{field}", x, y,
                              f"architecture {a.name}: {field} {_value(x)} → {_value(y)}"))
    if o.base.weights != n.base.weights:
        out.append(Change("cause", "base.weights", o.base.weights, n.base.weights,
                          f"base weights: {o.base.weights or 'random init'} → "
                          f"{n.base.weights or 'random init'}"))
    return out


GROWTH_WORDS = {
    "add": lambda v: f"+{v} blocks",
    "placement": lambda v: {"interleave": "interleaved", "top": "on top", "bottom": "at the bottom",
                            "explicit": "after listed layers"}[v],
    "after": lambda v: "after layers " + ", ".join(map(str, v)) if v else "no list",
    "init": lambda v: {"identity": "identity (o_proj, down_proj zeroed)",
                       "copy": "plain copies"}[v],
    "train": lambda v: {"all": "all layers train", "new": "only the new blocks train"}[v],
    "drop": lambda v: f"drop {v} layers per copy",
}


def _growth_changes(old_plan: Plan, new_plan: Plan) -> list[Change]:
    o, n = old_plan.spec.growth, new_plan.spec.growth
    if _same(o, n):
        return []
    if o is None or n is None or o.method != n.method:
        a = describe_growth(old_plan.spec, old_plan.growth)
        b = describe_growth(new_plan.spec, new_plan.growth)
        return [Change("cause", "growth", _json(o), _json(n), f"growth: {a} → {b}")]
    out = []
    for field, x, y in _field_diffs(o, n, skip={"method"}):
        words = GROWTH_WORDS.get(field, _value)
        out.append(Change("cause", f"growth.{field}", x, y,
                          f"growth {field}: {words(x)} → {words(y)}"))
    return out


def _language_changes(o: Spec, n: Spec) -> list[Change]:
    out = []
    old = {lang.code: lang for lang in o.languages}
    new = {lang.code: lang for lang in n.languages}
    for code, lang in old.items():
        if code not in new:
            out.append(Change("cause", f"language.{code}", lang.to_json(), None,
                              f"language removed: {code} ({lang.name}, "
                              f"{'~' if lang.approx else ''}{_tokens(lang.tokens)} tokens)"))
    for code, lang in new.items():
        if code not in old:
            window = ""
            if (lang.enter.percent, lang.exit.percent) != (0.0, 100.0):
                window = f", from {lang.enter.describe()} to {lang.exit.describe()} of training"
            out.append(Change("cause", f"language.{code}", None, lang.to_json(),
                              f'language added: {code} "{lang.name}", '
                              f"{'~' if lang.approx else ''}{_tokens(lang.tokens)} tokens{window}"))
    for code in [c for c in new if c in old]:
        a, b = old[code], new[code]
        for field, x, y in _field_diffs(a, b, skip={"approx"}):
            out.append(_language_change(code, field, a, b, x, y))
        if a.approx != b.approx and a.tokens == b.tokens:
            out.append(Change("cause", f"language.{code}.approx", a.approx, b.approx,
                              f"{code}: budget {_budget(a)} → {_budget(b)} "
                              f"({'may now absorb' if b.approx else 'no longer absorbs'} the "
                              "difference to the declared total)"))
    common_old = [c for c in old if c in new]
    common_new = [c for c in new if c in old]
    if common_old != common_new:  # the order of the mixture columns and of plan.json
        out.append(Change("cause", "languages.order", common_old, common_new,
                          f"languages reordered: {', '.join(common_old)} → "
                          f"{', '.join(common_new)}"))
    return out


def _budget(lang) -> str:
    return ("~" if lang.approx else "") + _tokens(lang.tokens, 6)


def _language_change(code, field, a, b, x, y) -> Change:
    key = f"language.{code}.{field}"
    if field == "tokens":
        pa, pb = _apart(a.tokens, b.tokens, _tokens)
        text = f"{code}: budget {'~' if a.approx else ''}{pa} → {'~' if b.approx else ''}{pb}"
    elif field == "enter":
        text = f"{code}: enters at {b.enter.describe()} (was {a.enter.describe()})"
    elif field == "exit":
        text = f"{code}: leaves at {b.exit.describe()} (was {a.exit.describe()})"
    elif field == "corpus":
        text = (f"{code}: corpus {_tokens(a.corpus) if a.corpus else 'unknown'} → "
                f"{_tokens(b.corpus) if b.corpus else 'unknown'}")
    elif field == "sources":
        text = f"{code}: data {_value(x)} → {_value(y)}"
    elif field == "eval":
        text = f"{code}: evaluation data {_value(x)} → {_value(y)}"
    elif field == "name":
        text = f'{code}: name "{x}" → "{y}"'
    else:
        text = f"{code}: {field} {_value(x)} → {_value(y)}"
    return Change("cause", key, x, y, text)


def _mixture_changes(o: Spec, n: Spec) -> list[Change]:
    """Explicit `phase P { … }` mixtures, matched by where they start."""
    out = []
    old = {p.start.describe(): p.weights for p in o.phases}
    new = {p.start.describe(): p.weights for p in n.phases}

    def weights(w):
        return ", ".join(f"{c} {_percent(100 * v, 4)}" for c, v in w.items())

    for start in old.keys() - new.keys():
        out.append(Change("cause", f"mixture.{start}", old[start], None,
                          f"explicit mixture from {start} removed (was {weights(old[start])}); "
                          "the solver decides there now"))
    for start in new.keys() - old.keys():
        out.append(Change("cause", f"mixture.{start}", None, new[start],
                          f"explicit mixture from {start} added: {weights(new[start])}"))
    for start in old.keys() & new.keys():
        if old[start] != new[start]:
            out.append(Change("cause", f"mixture.{start}", old[start], new[start],
                              f"explicit mixture from {start}: {weights(old[start])} → "
                              f"{weights(new[start])}"))
    return sorted(out, key=lambda c: c.key)


TRAIN_WORDS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "tokens": ("declared total", lambda v: "the sum of the budgets" if v is None else
               f"{_tokens(v, 6)} tokens"),
    "sequence": ("sequence length", lambda v: f"{v:,}"),
    "batch": ("batch", lambda v: f"{v:,} sequences"),
    "precision": ("precision", str),
    "checkpoint_every": ("checkpoint every", lambda v: f"{v:,} steps"),
    "keep_checkpoints": ("checkpoints kept", lambda v: "all" if v is None else f"{v:,}"),
    "eval_every": ("evaluation every", lambda v: "checkpoint" if v is None else f"{v:,} steps"),
    "eval_steps": ("evaluation batches per language", lambda v: f"{v:,}"),
    "seed": ("seed", str),
    "micro_batch": ("micro-batch", lambda v: "the whole batch" if v is None else f"{v:,}"),
}

OPTIMIZER_WORDS = {"lr": "learning rate", "betas": "betas", "eps": "eps",
                   "weight_decay": "weight decay", "momentum": "momentum", "clip": "gradient clip"}


def _train_changes(o: Spec, n: Spec) -> list[Change]:
    out = []
    a, b = o.train, n.train
    for field, x, y in _field_diffs(a, b, skip={"optimizer", "schedule"}):
        label, words = TRAIN_WORDS.get(field, (field, _value))
        out.append(Change("cause", f"train.{field}", x, y, f"{label}: {words(x)} → {words(y)}"))
    oa, ob = a.optimizer, b.optimizer
    if oa.kind != ob.kind:
        out.append(Change("cause", "train.optimizer", oa.to_json(), ob.to_json(),
                          f"optimizer: {describe_optimizer(oa)} → {describe_optimizer(ob)}"))
    else:
        for field, x, y in _field_diffs(oa, ob, skip={"kind"}):
            out.append(Change("cause", f"train.optimizer.{field}", x, y,
                              f"{oa.kind} {OPTIMIZER_WORDS.get(field, field)}: {_value(x)} → "
                              f"{_value(y)}"))
    if [s.to_json() for s in a.schedule] != [s.to_json() for s in b.schedule]:
        out.append(Change("cause", "train.schedule", [s.to_json() for s in a.schedule],
                          [s.to_json() for s in b.schedule],
                          f"LR schedule: {describe_lr_schedule(a)} → {describe_lr_schedule(b)}"))
    return out


def _field_diffs(a: Model, b: Model, skip=frozenset()):
    """(field, old JSON, new JSON) for each serialised field of two models that differs."""
    old, new = a.to_json(), b.to_json()
    for field in old:
        if field not in skip and old[field] != new.get(field):
            yield field, old[field], new.get(field)


HANDLED = {"name", "base", "growth", "vocab", "tokenizer", "tokenizer_training", "languages",
           "phases", "train", "hardware"}


def _uncovered(o: Spec, n: Spec) -> list[Change]:
    """Spec fields this module has no words for yet (added to the IR later): still reported, so a
    changed spec hash never comes with an empty diff."""
    old, new = o.to_json(), n.to_json()
    return [Change("cause", f"spec.{k}", old.get(k), new.get(k),
                   f"{k}: {_value(old.get(k))} → {_value(new.get(k))}")
            for k in sorted(old.keys() | new.keys())
            if k not in HANDLED and old.get(k) != new.get(k)]


# --------------------------------------------------------------------------------------------------
# consequences: the plan
# --------------------------------------------------------------------------------------------------

def plan_changes(old: Plan, new: Plan) -> list[Change]:
    return _schedule_changes(old, new) + _growth_consequences(old, new) + \
        _estimate_changes(old, new)


SCHEDULE_CONSEQUENCES: dict[str, Callable[[Any, Any], str]] = {
    "tokens_per_step": lambda x, y: f"tokens per step: {x:,} → {y:,}",
    "total_steps": lambda x, y: f"total steps: {x:,} → {y:,} ({y - x:+,})",
    "compiled_tokens": lambda x, y: "tokens trained on: {} → {}".format(*_apart(x, y, _tokens)),
}


def _schedule_changes(old: Plan, new: Plan) -> list[Change]:
    out: list[Change] = []
    a, b = old.schedule, new.schedule

    def consequence(key, x, y, text):
        out.append(Change("consequence", key, x, y, text))

    out += _moved("schedule", a, b, SCHEDULE_CONSEQUENCES)
    if len(a.phases) != len(b.phases):
        consequence("schedule.phases", len(a.phases), len(b.phases),
                    f"phases: {len(a.phases)} → {len(b.phases)} "
                    f"({_layout(a.phases)} → {_layout(b.phases)})")
    out += _language_consequences(old, new)
    pairs, gone = _match_phases(a.phases, b.phases)
    for p in b.phases:  # in the new plan's order
        if p.index in pairs:
            out += _phase_changes(pairs[p.index], p)
        else:
            consequence(f"phase.{p.index}", None, _phase_json(p),
                        f"new phase {p.index}: steps {p.start_step:,}–{p.end_step:,} "
                        f"({_span_percent(p)}, {p.steps:,} steps), {_mixture(p)}")
    for p in gone:
        consequence(f"phase.{p.index}", _phase_json(p), None,
                    f"old phase {p.index} (steps {p.start_step:,}–{p.end_step:,}, "
                    f"{_span_percent(p)}) is gone")
    return out


def _layout(phases) -> str:
    return " | ".join(f"{p.start_step:,}–{p.end_step:,}" for p in phases)


def _span_percent(p: Phase) -> str:
    return f"{p.start_percent:.4g}%–{p.end_percent:.4g}%"


def _mixture(p: Phase) -> str:
    return ", ".join(f"{s.code} {_percent(100 * s.weight, 4)}" for s in p.active)


def _phase_json(p: Phase) -> dict:
    return {"start_step": p.start_step, "end_step": p.end_step,
            "weights": {s.code: s.weight for s in p.shares}}


def _match_phases(a, b):
    """{new phase index: the old phase it continues}, and the old phases without a successor.

    With as many phases on both sides the n-th is the n-th (an entry point that moves moves its
    phase); otherwise phases are paired by where they start in the run, within one step of the
    shorter run (a boundary at 90% lands on slightly different fractions of different step counts).
    """
    if len(a) == len(b):
        return {q.index: p for p, q in zip(a, b)}, []
    one_step = 100 / min(a[-1].end_step, b[-1].end_step)
    unmatched, pairs, gone = list(b), {}, []
    for p in a:
        q = next((q for q in unmatched if abs(q.start_percent - p.start_percent) <= one_step), None)
        if q is None:
            gone.append(p)
        else:
            unmatched.remove(q)
            pairs[q.index] = p
    return pairs, gone


def _phase_changes(a: Phase, b: Phase) -> list[Change]:
    out = []
    name = f"phase {b.index}" + (f" (was phase {a.index})" if a.index != b.index else "")
    key = f"phase.{b.index}"
    one_step = 100 / min(a.end_step, b.end_step)  # not when only the run's length moved it
    if b.index > 1 and abs(a.start_percent - b.start_percent) > one_step:
        out.append(Change("consequence", f"{key}.start", a.start_step, b.start_step,
                          f"{name} starts at step {b.start_step:,} ({b.start_percent:.4g}% of "
                          f"the run) instead of {a.start_step:,} ({a.start_percent:.4g}%)"))
    if a.steps != b.steps:
        verb = "grows" if b.steps > a.steps else "shrinks"
        out.append(Change("consequence", f"{key}.steps", a.steps, b.steps,
                          f"{name} {verb} from {a.steps:,} to {b.steps:,} steps"))
    if a.explicit != b.explicit:
        out.append(Change("consequence", f"{key}.explicit", a.explicit, b.explicit,
                          f"{name}'s mixture is now {'explicit' if b.explicit else 'solved'}"))
    codes = [s.code for s in a.shares] + [s.code for s in b.shares
                                           if s.code not in {x.code for x in a.shares}]
    for code in codes:
        sa = next((s for s in a.shares if s.code == code and s.sequences), None)
        sb = next((s for s in b.shares if s.code == code and s.sequences), None)
        if sa is None and sb is None:
            continue
        k = f"{key}.{code}"
        if sa is None:
            out.append(Change("consequence", k, None, _share(sb),
                              f"{name} · {code}: now drawn, {_percent(100 * sb.weight, 4)} of the "
                              f"mixture ({_tokens(sb.tokens)} tokens)"))
        elif sb is None:
            out.append(Change("consequence", k, _share(sa), None,
                              f"{name} · {code}: no longer drawn (was "
                              f"{_percent(100 * sa.weight, 4)}, {_tokens(sa.tokens)} tokens)"))
        elif (sa.sequences, sa.weight) != (sb.sequences, sb.weight):
            parts = []
            if sa.weight != sb.weight:
                wa, wb = _apart(100 * sa.weight, 100 * sb.weight, _percent)
                parts.append(f"{wa} → {wb} of the mixture")
            if sa.tokens != sb.tokens:
                ta, tb = _apart(sa.tokens, sb.tokens, _tokens)
                parts.append(f"{ta} → {tb} tokens")
            else:
                parts.append(f"still {_tokens(sb.tokens)} tokens")
            out.append(Change("consequence", k, _share(sa), _share(sb),
                              f"{name} · {code}: {', '.join(parts)}"))
    return out


def _share(s) -> dict:
    return {"weight": s.weight, "sequences": s.sequences, "tokens": s.tokens}


def drawn_tokens(plan: Plan, code: str) -> int:
    """Tokens of training during which a language is drawn: the length of its active phases."""
    s = plan.schedule
    return sum(p.steps for p in s.phases if p.share(code).sequences) * s.tokens_per_step


def _language_consequences(old: Plan, new: Plan) -> list[Change]:
    out = []
    a = {lang.code: lang for lang in old.schedule.languages}
    for lb in new.schedule.languages:
        code, la = lb.code, a.get(lb.code)
        key = f"language.{code}"
        if la is None:
            out.append(Change("consequence", f"{key}.compiled_tokens", None, lb.compiled_tokens,
                              f"{lb.name}: {lb.compiled_tokens:,} tokens, first drawn at step "
                              f"{lb.first_step:,}" if lb.first_step is not None else
                              f"{lb.name}: {lb.compiled_tokens:,} tokens"))
            continue
        if la.compiled_tokens != lb.compiled_tokens:
            ta, tb = _apart(la.compiled_tokens, lb.compiled_tokens, _tokens)
            out.append(Change("consequence", f"{key}.compiled_tokens", la.compiled_tokens,
                              lb.compiled_tokens, f"{lb.name}: {ta} → {tb} tokens trained on "
                              f"({la.compiled_tokens:,} → {lb.compiled_tokens:,})"))
        da, db = drawn_tokens(old, code), drawn_tokens(new, code)
        if da != db:
            pa, pb = _apart(da, db, _tokens)
            out.append(Change("consequence", f"{key}.drawn_during", da, db,
                              f"{lb.name} now spread over {pb} tokens of training instead of "
                              f"{pa}"))
        if la.first_step != lb.first_step and None not in (la.first_step, lb.first_step):
            out.append(Change("consequence", f"{key}.first_step", la.first_step, lb.first_step,
                              f"{lb.name} first drawn at step {lb.first_step:,} (was "
                              f"{la.first_step:,})"))
        if la.epochs != lb.epochs and None not in (la.epochs, lb.epochs):
            ea, eb = _apart(la.epochs, lb.epochs, lambda x, d: f"{x:.{d}g}")
            out.append(Change("consequence", f"{key}.epochs", la.epochs, lb.epochs,
                              f"{lb.name}: {ea} → {eb} epochs of its corpus"))
    return out


def _moved(key: str, a, b, words: dict[str, Callable[[Any, Any], str]]) -> list[Change]:
    """A consequence for each of `words`' fields that differs between two plan parts."""
    out = []
    for field, text in words.items():
        x, y = _json(getattr(a, field)), _json(getattr(b, field))
        if x != y:
            out.append(Change("consequence", f"{key}.{field}", x, y, text(x, y)))
    return out


def _parameters(x: int, y: int) -> str:
    pa, pb = _apart(x, y, _tokens)
    return f"parameters: {x:,} → {y:,} ({y - x:+,}; {pa} → {pb})"


GROWTH_CONSEQUENCES: dict[str, Callable[[Any, Any], str]] = {
    "layers": lambda x, y: f"layers: {x} → {y}",
    "new_indices": lambda x, y: f"new layers at: {_value(x)} → {_value(y)}",
    "vocab": lambda x, y: f"vocabulary: {x:,} → {y:,}",
    "parameters": _parameters,
    "trainable_parameters": lambda x, y: f"trainable parameters: {x:,} → {y:,}",
    "function_preserving": lambda x, y: "the grown model " + (
        "now computes" if y else "no longer computes") + " the base model's function",
}


def _growth_consequences(old: Plan, new: Plan) -> list[Change]:
    out = _moved("growth", old.growth, new.growth, GROWTH_CONSEQUENCES)
    la, lb = layer_diagram(old.growth), layer_diagram(new.growth)
    if la != lb:  # after the layer count, before the new indices
        out.insert(1 if out and out[0].key == "growth.layers" else 0, Change(
            "consequence", "growth.layer_map", la, lb,
            f"layer map: {la or 'unchanged base'} → {lb or 'unchanged base'}"))
    return out


ESTIMATE_CONSEQUENCES: dict[str, Callable[[Any, Any], str]] = {
    "utilisation": lambda x, y: f"assumed utilisation: {100 * x:.0f}% → {100 * y:.0f}%",
    "flops": lambda x, y: f"estimated compute: {x:.3g} → {y:.3g} FLOPs ({_relative(x, y)})",
    "seconds": lambda x, y: f"estimated time: {duration(x)} → {duration(y)} ({_relative(x, y)})",
    "energy_kwh": lambda x, y: f"estimated energy: {energy(x)} → {energy(y)} "
                               f"({_relative(x, y)})",
}


def _estimate_changes(old: Plan, new: Plan) -> list[Change]:
    return _moved("estimate", old.estimate, new.estimate, ESTIMATE_CONSEQUENCES)


def unchanged(old: Plan, new: Plan) -> list[str]:
    """The headline facts that did not move: a reviewer wants to read 'parameters unchanged'."""
    facts = [
        ("total steps", old.schedule.total_steps, new.schedule.total_steps, _count),
        ("phases", len(old.schedule.phases), len(new.schedule.phases), str),
        ("parameters", old.growth.parameters, new.growth.parameters, _count),
        ("estimated time", old.estimate.seconds, new.estimate.seconds, duration),
        ("estimated energy", old.estimate.energy_kwh, new.estimate.energy_kwh, energy),
    ]
    return [f"{label} {fmt(x)}" for label, x, y, fmt in facts if x == y]


# --------------------------------------------------------------------------------------------------
# renderers
# --------------------------------------------------------------------------------------------------

def verdict(report: Report, code=str) -> str:
    """One line: identical, the same experiment, or how much changed. `code` marks up hashes."""
    if report.identical_text:
        return "identical"
    old, new = code(report.old_hash[:12]), code(report.new_hash[:12])
    if report.same_experiment:
        return (f"no change to the experiment (same spec hash {new}); only formatting/comments "
                "(or how values are written) differ")
    causes = sum(c.kind == "cause" for c in report.changes)
    follows = len(report.changes) - causes
    return (f"the experiment changed (spec {old} → {new}): "
            f"{causes} change{'s' if causes != 1 else ''} to the spec, {follows} consequence"
            f"{'s' if follows != 1 else ''} in the plan")


def render_text(report: Report) -> str:
    out = [f"{report.old_source} → {report.new_source}: {verdict(report)}"]
    out += _sections(report, heading=lambda t: f"\n{t}:", item="  - ")
    return "\n".join(out) + "\n"


def render_markdown(report: Report) -> str:
    out = [f"### What changed: `{report.old_source}` → `{report.new_source}`", "",
           verdict(report, code=lambda h: f"`{h}`")]
    out += _sections(report, heading=lambda t: f"\n**{t}**\n", item="- ")
    return "\n".join(out) + "\n"


def _sections(report: Report, heading, item) -> list[str]:
    if report.same_experiment:
        return []
    out = []
    for kind, title in (("cause", "Changed in the spec"), ("consequence", "What follows")):
        changes = [c for c in report.changes if c.kind == kind]
        if changes:
            out.append(heading(title))
            out += [item + c.text for c in changes]
    if report.unchanged:
        out.append(heading("Unchanged"))
        out.append(item + "; ".join(report.unchanged))
    return out


def render_json(report: Report) -> str:
    result = ("identical" if report.identical_text else
              "same-experiment" if report.same_experiment else "different")
    return json.dumps({
        "format": "genbac.diff/1",
        "old": {"source": report.old_source, "spec_hash": report.old_hash},
        "new": {"source": report.new_source, "spec_hash": report.new_hash},
        "result": result,
        "summary": verdict(report),
        "changes": [c._asdict() for c in report.changes],
        "unchanged": list(report.unchanged),
    }, indent=2, ensure_ascii=False) + "\n"
