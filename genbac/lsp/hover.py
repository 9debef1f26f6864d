"""Hover: what a key means, and what the compiler decided about the block it is in.

Over a `language` block (its header or any of its settings): the language's window as steps and
compiled tokens, per phase; over a `phase`: its mixture; over `grow`: the layer map and parameter
count; over `train`: steps, tokens per step and the LR curve; over `base` and `hardware`: the model
and the estimate; over the experiment's name: the headline. Numbers come from the Plan, as
`explain`'s do; a spec with errors has no plan, and hover then says what the key means only. A
spec that sweeps shows each variant's numbers.
"""

from __future__ import annotations

from genbac.compiler.explain import (describe_base, describe_growth, describe_lr_schedule,
                                     describe_optimizer, energy, headline, layer_diagram)
from genbac.compiler.plan import Plan
from genbac.compiler.schedule import fmt_tokens, round_half_up
from genbac.spec import ast, reference
from genbac.spec.ast import label_text
from genbac.text import duration

from .analysis import Analysis
from .tree import blocks_of, chain_at

MAX_VARIANTS_SHOWN = 4


def context_name(block: ast.Block | None) -> str:
    """The reference's name for the settings a block holds ("experiment" at the top level)."""
    if block is None:
        return "experiment"
    kind = block.kind.value
    if kind == "grow" and block.labels:
        return f"grow {label_text(block.labels[0])}"
    return kind


def hover(analysis: Analysis, offset: int):
    """(Markdown, span of the word hovered) or None."""
    if analysis.document is None:
        return None
    chain = chain_at(analysis.document, offset)
    if not chain:
        return None
    blocks = blocks_of(chain)
    innermost = blocks[-1] if blocks else None
    word = chain[-1]
    parts: list[str] = []
    setting = next((n for n in reversed(chain) if isinstance(n, ast.Setting)), None)

    if setting is not None and setting.key is word:  # a key: what it means
        doc = reference.KEY_DOCS.get(context_name(innermost), {}).get(setting.key.value)
        if doc:
            parts.append(f"**{setting.key.value}** · {doc}")
    elif isinstance(word, ast.Name) and innermost is not None and word is innermost.kind:
        doc = reference.BLOCK_DOCS.get(word.value)
        if doc:
            parts.append(f"**{word.value}** · {doc}")

    decided = _decided(analysis, blocks, setting)
    if decided:
        parts.append(decided)
    if not parts:
        return None
    return "\n\n---\n\n".join(parts), getattr(word, "span", None)


def _decided(analysis: Analysis, blocks: list[ast.Block], setting: ast.Setting | None) -> str:
    planned = analysis.planned
    if not planned:
        return ""
    render = _renderer(blocks, setting)
    if render is None:
        return ""
    out = []
    for variant in planned[:MAX_VARIANTS_SHOWN]:
        text = render(variant.plan)
        if text:
            out.append((f"*{variant.name}*\n\n" if variant.name else "") + text)
    if len(planned) > MAX_VARIANTS_SHOWN:
        out.append(f"… and {len(planned) - MAX_VARIANTS_SHOWN} more variants (`genbac explain`)")
    return "\n\n".join(out)


def _renderer(blocks: list[ast.Block], setting: ast.Setting | None):
    inner = blocks[-1] if blocks else None
    kind = inner.kind.value if inner is not None else None
    if kind == "language" and inner.labels:
        code = label_text(inner.labels[0])
        return lambda plan: language_summary(plan, code)
    if kind == "phase" and inner.labels and isinstance(inner.labels[0], ast.Quantity):
        return lambda plan: phase_summary(plan, inner.labels[0])
    if kind == "grow":
        return growth_summary
    if kind == "train":
        return train_summary
    if kind in ("experiment", None) and setting is not None:
        if setting.key.value == "base":
            return describe_base
        if setting.key.value == "hardware":
            return estimate_summary
        return None
    if kind == "experiment":
        return lambda plan: headline(plan)
    return None


def language_summary(plan: Plan, code: str) -> str:
    s = plan.schedule
    lang = next((x for x in s.languages if x.code == code), None)
    if lang is None:
        return ""
    active = [p for p in s.phases if p.share(code).sequences]
    lines = [f"**{lang.code}** {lang.name}: {lang.enter_percent:g}%–{lang.exit_percent:g}% of "
             "training"]
    if active:
        lines.append(f"- steps {active[0].start_step:,}–{active[-1].end_step:,} of "
                     f"{s.total_steps:,}; first step {lang.first_step:,}")
    written = ("~" if lang.approx else "") + fmt_tokens(lang.written_tokens)
    sequences = sum(p.share(code).sequences for p in active)
    lines.append(f"- {lang.compiled_tokens:,} tokens compiled ({sequences:,} sequences; "
                 f"{written} written" + (f", {fmt_tokens(lang.target_tokens)} after fitting"
                                         if lang.target_tokens != lang.written_tokens else "")
                 + ")")
    if lang.epochs is not None:
        lines.append(f"- {lang.epochs:.2f} epochs of its corpus")
    for p in active:
        share = p.share(code)
        lines.append(f"- phase {p.index} (steps {p.start_step:,}–{p.end_step:,}): "
                     f"{100 * share.weight:.3f}% of sequences, {share.tokens:,} tokens")
    return "\n".join(lines)


def phase_summary(plan: Plan, start: ast.Quantity) -> str:
    s = plan.schedule
    # where the schedule put it (compiler/schedule.py: the same fraction, rounded the same way)
    fraction = (float(start.value) / 100 if start.unit == "%" else
                int(start.value) / s.requested_tokens)
    step = round_half_up(fraction * s.total_steps)
    phase = next((p for p in s.phases if p.start_step == step), None)
    if phase is None:
        return ""
    lines = [f"**phase {phase.index}**: steps {phase.start_step:,}–{phase.end_step:,} "
             f"({phase.start_percent:.4g}%–{phase.end_percent:.4g}%), "
             f"{'explicit' if phase.explicit else 'solved'} mixture"]
    for share in phase.active:
        lines.append(f"- {share.code}: {100 * share.weight:.3f}% · {share.sequences:,} sequences "
                     f"· {share.tokens:,} tokens")
    return "\n".join(lines)


def growth_summary(plan: Plan) -> str:
    g = plan.growth
    if g.method == "none":
        return ""
    return "\n".join([
        describe_growth(plan.spec, g),
        f"- layer map: `{layer_diagram(g)}`; new layers at {', '.join(map(str, g.new_indices))}",
        f"- parameters: {g.base_parameters:,} -> {g.parameters:,} ({g.parameters / 1e9:.3f}B); "
        f"trainable {g.trainable_parameters:,}",
        f"- {'function-preserving' if g.function_preserving else 'not function-preserving'}"])


def train_summary(plan: Plan) -> str:
    s = plan.schedule
    n = len(s.phases)
    return "\n".join([
        f"{s.batch} x {s.sequence:,} = {s.tokens_per_step:,} tokens per step -> {s.total_steps:,} "
        f"steps, {s.compiled_tokens:,} tokens compiled in {n} phase{'s' if n != 1 else ''}",
        f"- optimizer: {describe_optimizer(plan.spec.train.optimizer)}",
        f"- schedule: {describe_lr_schedule(plan.spec.train)}",
        f"- checkpoint every {plan.checkpoint_every:,} steps; evaluation every "
        f"{plan.eval_every:,} steps"])


def estimate_summary(plan: Plan) -> str:
    e, p = plan.estimate, plan.parallelism
    lines = [headline(plan), "",
             f"- {e.flops:.3g} FLOPs at an assumed {100 * e.utilisation:.0f}% of "
             f"{e.peak_flops / 1e15:.4g} PFLOP/s per device",
             f"- time ≈ {duration(e.seconds)}; energy ≈ {energy(e.energy_kwh)} (estimate, not "
             "measured)"]
    if p is not None:
        lines.append(f"- {p.strategy.upper()} over {p.devices} GPUs (shards of {p.shard}), "
                     f"micro-batch {p.micro_batch} x {p.accumulation}, activation checkpointing "
                     f"{'on' if p.activation_checkpointing else 'off'}: ≈ "
                     f"{p.memory.total / 1e9:.1f} GB per GPU of {p.usable_bytes / 1e9:.0f} GB "
                     "usable")
    return "\n".join(lines)
