"""`genbac explain`: what a Plan will do, in words and tables (plain text or Markdown).

Every number printed here is read from the Plan, so what a reviewer sees is exactly what was compiled.
"""

from __future__ import annotations

from genbac.spec.ir import Node, Optimizer, Spec, Train
from genbac.text import duration
from genbac.text import table as _table

from .plan import GrowthPlan, Plan
from .schedule import fmt_tokens


def energy(kwh: float) -> str:
    if kwh >= 1000:
        return f"{kwh / 1000:,.2f} MWh"
    if kwh >= 1:
        return f"{kwh:,.1f} kWh"
    return f"{kwh * 1000:.2g} Wh"


def _pct(x: float) -> str:
    return f"{x:.4g}%"


def layer_diagram(growth: GrowthPlan) -> str:
    """Compact layer map: runs of base layers in brackets, new layers as `+src` (`*src` if copied
    without identity init). 32 -> 40 LLaMA Pro: `[0-3] +3 [4-7] +7 … [28-31] +31`."""
    parts: list[str] = []
    run: list[int] = []

    def flush():
        if run:
            parts.append(f"[{run[0]}]" if len(run) == 1 else f"[{run[0]}-{run[-1]}]")
            run.clear()

    for e in growth.layer_map:
        if e.new and growth.method == "blocks":
            flush()
            parts.append(("+" if e.init == "identity" else "*") + str(e.source))
        else:
            if run and e.source != run[-1] + 1:
                flush()
            run.append(e.source)
    flush()
    return " ".join(parts)


def layer_legend(growth: GrowthPlan) -> str:
    """What the symbols of `layer_diagram` mean (only those that occur), and which layers train."""
    if growth.method == "depth":
        symbols = ["`[a-b]` a copy of base layers a to b, in order"]
    else:
        symbols = ["`[a-b]` base layers a to b, in order"]
        inits = {e.init for e in growth.layer_map if e.new}
        if "identity" in inits:
            symbols.append("`+n` new block: a copy of base layer n with o_proj and down_proj "
                           "zeroed")
        if "copy" in inits:
            symbols.append("`*n` new block: a plain copy of base layer n")
    frozen = sum(not e.trainable for e in growth.layer_map)
    trains = (f"{frozen} layers frozen, {len(growth.layer_map) - frozen} trainable"
              if frozen else "every layer trains")
    return " · ".join(symbols) + f"; {trains}"


def describe_growth(spec: Spec, growth: GrowthPlan) -> str:
    """How the model grows, in one line (explain's `growth:` and diff's growth changes)."""
    if growth.method == "blocks":
        g = spec.growth
        how = {"interleave": "interleaved", "top": "on top", "bottom": "at the bottom",
               "explicit": "after layers " + ", ".join(map(str, g.after))}[g.placement]
        init = ("identity (o_proj, down_proj zeroed: function-preserving)"
                if g.init == "identity" else "plain copies (not function-preserving)")
        return (f"LLaMA-Pro block expansion, +{g.add} blocks {how} -> {growth.layers} layers; "
                f"init {init}; train {g.train}")
    if growth.method == "depth":
        return (f"depth up-scaling (SOLAR), two copies minus {spec.growth.drop} layers each -> "
                f"{growth.layers} layers; not function-preserving; train all")
    return "none"


def describe_base(plan: Plan) -> str:
    """The base model in one line (explain's `base:`, the editor's hover over `base`)."""
    a, g = plan.architecture, plan.growth
    weights = f" from {plan.base_weights}" if plan.base_weights else " (random init)"
    return (f"{a.name}{weights}: {g.base_layers} layers, hidden {a.hidden}, {a.heads} heads / "
            f"{a.kv_heads} kv, ffn {a.ffn}, vocab {g.base_vocab:,}, {g.base_parameters:,} "
            "parameters")


def describe_optimizer(opt: Optimizer) -> str:
    return (f"{opt.kind} lr {opt.lr:g}, betas {opt.betas[0]:g}/{opt.betas[1]:g}, "
            f"weight decay {opt.weight_decay:g}" + (f", clip {opt.clip:g}" if opt.clip else ""))


def describe_lr_schedule(train: Train) -> str:
    """`warmup(1%) then cosine(rest, to 10% of peak)`."""
    pieces = []
    for seg in train.schedule:
        length = (f"{seg.length_percent:g}%" if seg.length_percent is not None else
                  f"{seg.length_steps} steps" if seg.length_steps is not None else "rest")
        to = f", to {100 * seg.to:g}% of peak" if seg.kind in ("linear", "cosine") else ""
        pieces.append(f"{seg.kind}({length}{to})")
    return " then ".join(pieces)


def headline(plan: Plan) -> str:
    """The experiment in one line: size, length, and the estimated time."""
    s = plan.schedule
    n = len(s.phases)
    return (f"{plan.growth.parameters / 1e9:.3f}B parameters · {fmt_tokens(s.compiled_tokens)} "
            f"tokens · {s.total_steps:,} steps in {n} phase{'s' if n != 1 else ''} · "
            f"≈ {duration(plan.estimate.seconds)} on {plan.spec.hardware.describe()} (estimate)")


def value_origins(spec: Spec) -> dict[str, list[str]]:
    """The settings of a composed spec grouped by the file they were written in, in the order
    written, the experiment's own file first. A block written wholly in one file is named once
    (`language de`, `growth`); a block merged from several files is split into its settings
    (`train.optimizer.lr` here, `train.optimizer.weight_decay` there)."""

    def origins(node, where: str) -> list[tuple[str, str]]:
        found = []
        nested = {name for name in type(node).model_fields if isinstance(getattr(node, name), Node)}
        for field, span in node.spans.items():
            if field not in nested and field not in ("code", "name"):
                found.append((f"{where}{field}", span.path))
        for name in type(node).model_fields:
            value = getattr(node, name)
            if isinstance(value, Node):
                found.extend(collapse(value, f"{where}{name}"))
            elif name == "languages":
                for lang in value:
                    found.extend(collapse(lang, f"language {lang.code}"))
            elif name == "phases":
                for phase in value:
                    found.extend(collapse(phase, f"phase {phase.start.describe()}"))
        return found

    def collapse(node, label: str) -> list[tuple[str, str]]:
        inner = origins(node, f"{label}.")
        if not inner and node.span is not None:  # a value with no settings of its own
            return [(label, node.span.path)]
        paths = {path for _, path in inner}
        return [(label, paths.pop())] if len(paths) == 1 else inner

    grouped: dict[str, list[str]] = {}
    for label, path in origins(spec, ""):
        grouped.setdefault(path, []).append(label)
    own = spec.span.path if spec.span is not None else None
    return dict(sorted(grouped.items(), key=lambda kv: (kv[0] != own, kv[0])))


def describe_parallelism(plan: Plan, h: str, item: str, markdown: bool) -> list[str]:
    """The GPUs' share of the model: the choice and why, and every strategy's memory per GPU."""
    from .parallelism import GIB, best_option, strategies

    p, spec = plan.parallelism, plan.spec
    how = {"ddp": "DDP: a whole copy of the model on every GPU",
           "fsdp": f"FSDP: sharded over all {p.shard} GPUs",
           "hsdp": f"HSDP: sharded over each node's {p.shard} GPUs, replicated across "
                   f"{p.replicas} nodes"}[p.strategy]
    why = ("as the spec asks (`parallelism`)" if p.chosen_by == "spec" else
           "the first that fits of DDP, HSDP, FSDP (in the order of least communication)")
    out = [f"{h}Parallelism", f"{item}{how}; {why}",
           f"{item}{p.per_device_batch} sequences per GPU per step: micro-batch {p.micro_batch} "
           f"x {p.accumulation} accumulation step{'s' if p.accumulation != 1 else ''}, activation"
           f" checkpointing {'on' if p.activation_checkpointing else 'off'}",
           f"{item}per GPU ≈ {p.memory.total / GIB:.1f} GB of {p.usable_bytes / GIB:.0f} GB usable"
           f" ({p.device_bytes / GIB:.0f} GB x 90%; estimate, see README \"Parallelism\")", ""]
    rows = []
    candidates = strategies(spec)
    if (p.strategy, p.shard) not in candidates:  # forced: FSDP on one GPU
        candidates.append((p.strategy, p.shard))
    for strategy, shard in candidates:
        option, fits = best_option(spec, plan.growth, strategy, shard, p.usable_bytes)
        m = option.memory
        rows.append([strategy, str(shard), str(option.micro_batch),
                     "on" if option.checkpointing else "off", f"{m.state / GIB:.1f}",
                     f"{m.gathered / GIB:.1f}", f"{m.activations / GIB:.1f}",
                     f"{m.logits / GIB:.1f}", f"{m.total / GIB:.1f}",
                     ("chosen" if strategy == p.strategy else "fits") if fits else "does not fit"])
    out += _table(["strategy", "shard", "micro-batch", "checkpointing", "state GB", "gathered GB",
                   "activations GB", "logits GB", "total GB", ""], rows, markdown, "lrrlrrrrrl")
    return out


def explain(plan: Plan, warnings=(), *, markdown: bool = False) -> str:
    spec = plan.spec
    g = plan.growth
    s = plan.schedule
    e = plan.estimate
    h = "### " if markdown else ""
    # Markdown joins consecutive lines into one paragraph, so each fact becomes a list item there
    item = "- " if markdown else ""
    out: list[str] = []
    title = f"## {plan.name}" if markdown else plan.name
    out.append(title)
    out.append(f"spec sha256 `{plan.spec_hash}` · genbac {plan.genbac_version}" if markdown else
               f"spec sha256 {plan.spec_hash} · genbac {plan.genbac_version}")
    out.append("")
    out.append(f"**{headline(plan)}**" if markdown else headline(plan))
    out.append("")

    # model --------------------------------------------------------------------------------------
    out.append(f"{h}Model")
    out.append(f"{item}base: {describe_base(plan)}")
    out.append(f"{item}growth: {describe_growth(spec, g)}")
    if g.method != "none":
        if markdown:
            out.append(f"- layer map: `{layer_diagram(g)}`")
            out.append(f"  <br>legend: {layer_legend(g)}")
        else:
            out.append(f"layer map: {layer_diagram(g)}")
            out.append(f"legend: {layer_legend(g).replace('`', '')}")
        out.append(f"{item}new layers at: {', '.join(map(str, g.new_indices))}")
    added = g.layers - g.base_layers
    formula = f"{g.base_parameters:,}"
    if added:
        formula += f" + {added} x {g.layer_parameters:,}"
    if g.vocab_parameters:
        formula += f" + {g.vocab - g.base_vocab:,} tokens x {g.vocab_parameters // (g.vocab - g.base_vocab):,}"
    out.append(f"{item}parameters: {formula} = {g.parameters:,} ({g.parameters / 1e9:.3f}B); "
               f"trainable {g.trainable_parameters:,}")
    out.append("")

    # schedule -----------------------------------------------------------------------------------
    out.append(f"{h}Schedule")
    diff = s.compiled_tokens - s.requested_tokens
    out.append(f"{fmt_tokens(s.requested_tokens)} tokens requested / ({s.batch} x {s.sequence:,} = "
               f"{s.tokens_per_step:,} tokens per step) -> {s.total_steps:,} steps = "
               f"{s.compiled_tokens:,} tokens compiled ({diff:+,})")
    out.append("")
    codes = [lang.code for lang in s.languages]
    rows = []
    for ph in s.phases:
        row = [str(ph.index), f"{ph.start_step:,}–{ph.end_step:,}", f"{ph.steps:,}",
               f"{_pct(ph.start_percent)}–{_pct(ph.end_percent)}",
               fmt_tokens(ph.steps * s.tokens_per_step)]
        for c in codes:
            share = ph.share(c)
            row.append(f"{100 * share.weight:.3f}% · {fmt_tokens(share.tokens)}"
                       if share.sequences else "—")
        row.append("explicit" if ph.explicit else "solved")
        rows.append(row)
    out += _table(["phase", "steps", "count", "of run", "tokens", *codes, "mixture"], rows,
                  markdown, "lllll" + "r" * len(codes) + "l")
    out.append("")
    rows = []
    for lang in s.languages:
        written = ("~" if lang.approx else "") + fmt_tokens(lang.written_tokens)
        delta = lang.compiled_tokens - lang.target_tokens
        rows.append([lang.code, lang.name, written, fmt_tokens(lang.target_tokens),
                     f"{lang.compiled_tokens:,}", f"{delta:+,.0f}",
                     f"{delta / s.tokens_per_step:+.4f}",
                     f"{_pct(lang.enter_percent)}–{_pct(lang.exit_percent)}",
                     "—" if lang.first_step is None else f"{lang.first_step:,}",
                     "—" if lang.epochs is None else f"{lang.epochs:.2f}"])
    out += _table(["lang", "name", "budget", "target", "compiled tokens", "difference", "steps",
                   "window", "first step", "epochs"], rows, markdown, "llrrrrrlrr")
    out.append("")

    # optimisation ---------------------------------------------------------------------------------
    out.append(f"{h}Training")
    train = spec.train
    opt = train.optimizer
    out.append(f"{item}optimizer: {describe_optimizer(opt)}")
    out.append(f"{item}schedule: {describe_lr_schedule(train)}; cut into "
               f"{sum(len(p.lr) for p in s.phases)} per-phase pieces, at most "
               f"{100 * s.lr_max_deviation:.3f}% of the peak LR from the uncut curve")
    out.append(f"{item}precision {train.precision}; checkpoint every "
               f"{plan.checkpoint_every:,} steps from each phase's start and at its end"
               + (f"; evaluation every {plan.eval_every:,} steps, {train.eval_steps} batches per "
                  "language" if any(lang.eval for lang in spec.languages) else "")
               + f"; seed {train.seed}")
    out.append("")

    if plan.parallelism is not None:
        out += describe_parallelism(plan, h, item, markdown)
        out.append("")

    # estimate -----------------------------------------------------------------------------------
    out.append(f"{h}Estimate (assumed, not measured)")
    out.append(f"{item}{e.flops:.3g} FLOPs ({e.flops_per_token:.3g} per token, attention "
               f"+{100 * e.attention_share:.1f}%) on {spec.hardware.describe()} at an assumed "
               f"{100 * e.utilisation:.0f}% of {e.peak_flops / 1e15:.4g} PFLOP/s each")
    out.append(f"{item}time ≈ {duration(e.seconds)}; energy ≈ {energy(e.energy_kwh)} at "
               f"{e.power_kw:g} kW per device")
    out.append(f"{item}profile: {e.source}")

    origins = value_origins(spec)
    if len(origins) > 1:  # imports are involved: say which file each value was written in
        out.append("")
        out.append(f"{h}Where the values come from")
        for path, names in origins.items():
            out.append(f"{item}{path}: {', '.join(names)}")

    if warnings or markdown:  # a reviewer should see that there are none
        out.append("")
        out.append(f"{h}Warnings")
        for w in warnings:
            where = f"{w.span}: " if w.span else ""
            out.append(f"- {where}{w.message} [{w.code}]")
        if not warnings:
            out.append("none")
    return "\n".join(out) + "\n"


def explain_sweep(variants, *, markdown: bool = False) -> str:
    """A spec that sweeps: a table of its variants, then each variant explained in full.

    `variants` are compiler.compile.Planned (name, swept values, plan, diagnostics)."""
    keys = list(variants[0].values)
    rows = [[v.name, *(v.values[k] for k in keys), f"{v.plan.schedule.total_steps:,}",
             duration(v.plan.estimate.seconds), v.plan.spec_hash[:12]] for v in variants]
    title = f"{len(variants)} variants, sweeping {', '.join(keys)}"
    out = [f"# {title}" if markdown else title, ""]
    out += _table(["variant", *keys, "steps", "estimate", "spec"], rows, markdown,
                  "l" + "l" * len(keys) + "rrl")
    for v in variants:
        out += ["", "", explain(v.plan, v.diagnostics, markdown=markdown).rstrip("\n")]
    return "\n".join(out) + "\n"
