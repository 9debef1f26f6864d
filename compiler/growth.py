"""Growth pass: the layer map of the grown model and its exact parameter count.

LLaMA Pro block expansion (Wu et al. 2024): split the L base layers into `add` groups and insert, after
each group, a copy of the group's top layer whose o_proj and down_proj are zero, so the grown model
computes the same function. 32 -> 40 layers puts the new blocks at 4, 9, 14, …, 39, copies of base
layers 3, 7, 11, …, 31 (as TencentARC/LLaMA-Pro `block_expansion.py` does).

Depth up-scaling (SOLAR, Kim et al. 2023): two copies of the base; drop the last `drop` layers of the
first and the first `drop` layers of the second; concatenate. 32 layers with drop 8 -> 48 layers. Not
function-preserving; everything trains.

Example: llama3.1-8b grown by 8 blocks has 9,775,157,248 parameters.
"""

from __future__ import annotations

from genbac.spec.architectures import embedding_parameters, layer_parameters, parameter_count
from genbac.spec.diagnostics import Diagnostic, error
from genbac.spec.ir import Spec

from .plan import GrowthPlan, LayerEntry


def plan_growth(spec: Spec) -> tuple[GrowthPlan | None, list[Diagnostic]]:
    arch = spec.base.architecture
    base_layers = arch.layers
    growth = spec.growth
    diagnostics: list[Diagnostic] = []
    arch_span = spec.base.where("architecture")

    if growth is None:
        layer_map = tuple(LayerEntry.make(index=i, source=i, init="copy", trainable=True, new=False)
                          for i in range(base_layers))
    elif growth.method == "depth":
        m = growth.drop
        if 2 * m >= base_layers:
            diagnostics.append(error(
                "GB160", f"`drop = {m}` leaves nothing to grow: {arch.name} has {base_layers} "
                f"layers, and 2 x ({base_layers} - {m}) = {2 * (base_layers - m)} is not deeper",
                growth.where("drop"), f"must be below {(base_layers + 1) // 2}",
                secondary=[(arch_span, f"{base_layers} layers")],
                help=("SOLAR used drop = 8 for a 32-layer base (-> 48 layers)",)))
            return None, diagnostics
        first = list(range(0, base_layers - m))
        second = list(range(m, base_layers))
        layer_map = tuple(
            LayerEntry.make(index=i, source=src, init="copy", trainable=True, new=i >= len(first))
            for i, src in enumerate(first + second))
    else:
        add = growth.add
        trainable_base = growth.train == "all"
        if growth.placement == "interleave":
            if add > base_layers:
                diagnostics.append(error(
                    "GB161", f"cannot interleave {add} new blocks into {base_layers} layers",
                    growth.where("add"), f"more blocks than positions ({base_layers})",
                    secondary=[(arch_span, f"{arch.name}: {base_layers} layers")],
                    help=("use `place = top` to stack them, or list positions with `after`",)))
                return None, diagnostics
            if base_layers % add:
                divisors = [d for d in range(1, base_layers + 1) if base_layers % d == 0]
                diagnostics.append(error(
                    "GB162", f"{base_layers} layers do not split into {add} equal groups",
                    growth.where("add"), "not a divisor of the layer count",
                    secondary=[(arch_span, f"{arch.name}: {base_layers} layers")],
                    help=(f"use one of {', '.join(map(str, divisors))}, or list the positions "
                          "with `after = […]`",)))
                return None, diagnostics
            split = base_layers // add
            after = [i for i in range(base_layers) if (i + 1) % split == 0]
        elif growth.placement == "top":
            after = [base_layers - 1] * add
        elif growth.placement == "bottom":
            after = [-1] * add
        else:
            after = list(growth.after)
            bad = [(i, s) for i, s in zip(after, growth.spans.get("after_items", ()))
                   if i >= base_layers]
            for index, span in bad:
                diagnostics.append(error(
                    "GB163", f"layer {index} is out of range: {arch.name} has layers 0–"
                    f"{base_layers - 1}", span, "no such layer",
                    secondary=[(arch_span, f"{base_layers} layers")]))
            if bad:
                return None, diagnostics
        entries: list[LayerEntry] = []
        insert_after = sorted(after)
        for src in [-1] + list(range(base_layers)):
            if src >= 0:
                entries.append(LayerEntry.make(index=len(entries), source=src, init="copy",
                                               trainable=trainable_base, new=False))
            for _ in range(insert_after.count(src)):
                copy_of = max(src, 0)
                entries.append(LayerEntry.make(index=len(entries), source=copy_of, init=growth.init,
                                               trainable=True, new=True))
        layer_map = tuple(entries)

    layers = len(layer_map)
    base_vocab = arch.vocab
    vocab = base_vocab + (spec.vocab.add if spec.vocab else 0)
    per_layer = layer_parameters(arch)
    base_params = parameter_count(arch)
    params = parameter_count(arch, layers=layers, vocab=vocab)
    trainable = sum(e.trainable for e in layer_map) * per_layer
    if growth is None or growth.train == "all" or spec.vocab is not None:
        # embeddings, final norm and head train with the base, and must train for new tokens
        trainable += embedding_parameters(arch, vocab) + arch.hidden
    function_preserving = growth is None or (growth.method == "blocks" and
                                             growth.init == "identity")
    return GrowthPlan.make(
        method=growth.method if growth else "none",
        base_layers=base_layers,
        layers=layers,
        layer_map=layer_map,
        base_vocab=base_vocab,
        vocab=vocab,
        base_parameters=base_params,
        parameters=params,
        layer_parameters=per_layer,
        added_layer_parameters=(layers - base_layers) * per_layer,
        vocab_parameters=embedding_parameters(arch, vocab) - embedding_parameters(arch),
        trainable_parameters=trainable,
        function_preserving=function_preserving,
    ), diagnostics
