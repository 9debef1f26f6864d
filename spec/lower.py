"""AST -> IR: give the parsed shapes their meaning, and report every problem with where it is.

This pass knows the vocabulary of the language: which blocks and keys exist, what kind of value each
takes, which names are valid. It checks what can be checked on one value at a time (kinds, ranges,
unknown or duplicate names) and collects every diagnostic before giving up, so a user sees all their
mistakes at once. Checks that need the whole experiment (budgets against windows, growth layouts
against the base) are compiler passes and run on the IR.
"""

from __future__ import annotations

import posixpath
from typing import Iterable, NamedTuple

from . import ast, limits
from .architectures import BUILTIN, DEFAULT_WEIGHTS
from .diagnostics import Diagnostic, SpecError, error, suggestion, unique, warning
from .hub import is_hub, parse_hub
from .ir import (GPU_KINDS, HARDWARE_KINDS, PARALLELISMS, Architecture, Base, Growth, Hardware, Language, Optimizer,
                 PhaseMixture, Point, ScheduleSegment, Spec, TokenizerTraining, Train, VocabExtension)
from .limits import (MAX_ANY, MAX_LAYERS, MAX_SEED, MAX_SEQUENCE, MAX_STEPS, MAX_SYSTEMS,
                     MAX_TOKENS, MAX_VOCAB, MAX_WIDTH)
from .span import Span

EXPERIMENT_KEYS = {"base", "tokenizer", "hardware"}
EXPERIMENT_BLOCKS = {"architecture", "grow", "vocab", "language", "phase", "train"}
ARCHITECTURE_KEYS = {"hidden", "layers", "heads", "kv_heads", "ffn", "vocab", "head_dim", "context",
                     "tie_embeddings", "rope_theta", "norm_eps"}
GROW_METHODS = ("blocks", "depth")
GROW_KEYS = {"blocks": {"add", "place", "after", "init", "train"}, "depth": {"drop", "train"}}
VOCAB_KEYS = {"add", "init"}
LANGUAGE_KEYS = {"data", "tokens", "corpus", "enter", "exit", "eval"}
TRAIN_KEYS = {"tokens", "sequence", "batch", "optimizer", "schedule", "precision", "checkpoint",
              "keep_checkpoints", "eval", "eval_steps", "seed", "micro_batch", "parallelism"}
EVERY_KEYS = {"checkpoint", "eval"}
OPTIMIZERS = {"adamw": {"lr", "betas", "eps", "weight_decay", "clip"},
              "adam": {"lr", "betas", "eps", "weight_decay", "clip"},
              "sgd": {"lr", "momentum", "weight_decay", "clip"}}
SCHEDULE_PIECES = ("warmup", "constant", "linear", "cosine")
PRECISIONS = ("bf16", "fp16", "fp32")
PLACEMENTS = ("interleave", "top", "bottom")  # `grow blocks { place = … }`
GROW_INITS = ("identity", "copy")
GROW_TRAIN = {"blocks": ("all", "new"), "depth": ("all",)}
VOCAB_INITS = ("mean",)
TOKENIZER_ALGORITHMS = ("bpe",)


class _Lowering:
    def __init__(self, doc: ast.Document):
        self.doc = doc
        self.diagnostics: list[Diagnostic] = []

    # -- reporting ---------------------------------------------------------------------------------

    def error(self, code, message, span, label=None, **kw) -> None:
        self.diagnostics.append(error(code, message, span, label, **kw))

    def warn(self, code, message, span, label=None, **kw) -> None:
        self.diagnostics.append(warning(code, message, span, label, **kw))

    # -- generic block reading ---------------------------------------------------------------------

    def settings(self, block: ast.Block, keys: set[str], blocks: Iterable[str] = (),
                 where: str | None = None) -> tuple[dict[str, ast.Setting], list[ast.Block]]:
        """The block's settings by key, and its sub-blocks; unknown and repeated keys reported."""
        where = where or f"`{block.kind.value}`"
        blocks = set(blocks)
        found: dict[str, ast.Setting] = {}
        children: list[ast.Block] = []
        for entry in block.entries:
            if isinstance(entry, ast.Block):
                kind = entry.kind.value
                if kind in blocks:
                    children.append(entry)
                elif kind in keys:
                    self.error("GB101", f"`{kind}` is a setting, not a block", entry.kind.span,
                               "not a block", help=(f"write `{kind} = …`",))
                else:
                    self.error("GB101", f"unknown block `{kind}` in {where}", entry.kind.span,
                               "unknown block", **(_same_shape(suggestion(
                                   kind, blocks | keys, entry.kind.span), blocks)
                                   if blocks | keys else {}))
                continue
            key = entry.key.value
            if key not in keys:
                if key in blocks:
                    self.error("GB101", f"`{key}` is a block, not a setting", entry.key.span,
                               "not a setting", help=(f"write `{key} {{ … }}`",))
                else:
                    self.error("GB101", f"unknown key `{key}` in {where}", entry.key.span,
                               "unknown key", **_same_shape(
                                   suggestion(key, keys | blocks, entry.key.span), keys))
                continue
            if entry.op == "every" and key not in EVERY_KEYS:
                self.error("GB103", f"`{key} every …` is not a setting", entry.key.span,
                           help=(f"write `{key} = …`",))
                # reported once: the key counts as given, so no "missing" error follows
            if key in found:
                self.error("GB102", f"`{key}` is set twice in {where}", entry.key.span,
                           "set again here", secondary=[(found[key].key.span, "first set here")])
                continue
            found[key] = entry
        return found, children

    def require(self, found: dict[str, ast.Setting], key: str, block: ast.Block, what: str,
                example: str) -> ast.Setting | None:
        if key not in found:
            self.error("GB104", f"{what} is missing `{key}`", block.kind.span,
                       f"`{key}` is required here", help=(f"add `{example}`",))
            return None
        return found[key]

    # -- value readers: each returns None after reporting when the value does not fit ----------------

    def expect(self, value: ast.Value, kind: str, what: str, example: str) -> None:
        self.error("GB110", f"{what} must be {kind}, found {value.describe()}", value.span,
                   f"expected {kind}", help=(f"for example `{example}`",))

    def quantity(self, value, what, example, units=(None,)) -> ast.Quantity | None:
        if not isinstance(value, ast.Quantity):
            self.expect(value, "a number", what, example)
            return None
        if value.unit not in units:
            allowed = " or ".join("no unit" if u is None else f"`{u}`" for u in units)
            message = (f"{what} {value.text} has no unit" if value.unit is None else
                       f"{what} cannot be given in {value.unit}")
            self.error("GB111", message, value.span, f"expected {allowed}",
                       help=(f"for example `{example}`",))
            return None
        return value

    def integer(self, value, what, example, *, minimum=1, maximum=MAX_ANY,
                units=(None,)) -> int | None:
        q = self.quantity(value, what, example, units)
        if q is None:
            return None
        if q.approx:
            self.error("GB111", f"{what} cannot be approximate", q.span, "remove the `~`")
            return None
        if q.value != q.value.to_integral_value():
            self.error("GB112", f"{what} must be a whole number, found {q.text}", q.span,
                       "not a whole number", help=(f"for example `{example}`",))
            return None
        n = int(q.value)
        if n < minimum:
            self.error("GB113", f"{what} must be at least {minimum}, found {q.text}", q.span,
                       "out of range")
            return None
        if n > maximum:
            limit = f"{maximum:,}" if maximum < 10**7 else f"{maximum:.3g}"
            self.error("GB113", f"{what} of {q.text} is beyond any training run (at most "
                       f"{limit})", q.span, "out of range")
            return None
        return n

    def number(self, value, what, example, *, low=None, high=None, low_open=False,
               high_open=False, percent_ok=False) -> float | None:
        if percent_ok and isinstance(value, ast.Quantity) and value.unit == "%":
            q = value
            result = float(q.value / 100)
        else:
            q = self.quantity(value, what, example)
            if q is None:
                return None
            result = float(q.value)
        if q.approx:
            self.error("GB111", f"{what} cannot be approximate", q.span, "remove the `~`")
            return None
        bad_low = low is not None and (result <= low if low_open else result < low)
        bad_high = high is not None and (result >= high if high_open else result > high)
        if bad_low or bad_high:
            scale, unit = (100, "%") if q.unit == "%" else (1, "")
            lo = "" if low is None else ("(" if low_open else "[") + f"{low * scale:g}{unit}"
            hi = "" if high is None else f"{high * scale:g}{unit}" + (")" if high_open else "]")
            rng = f"{lo or '(-∞'}, {hi or '∞)'}"
            helps, fixes = (), ()
            if percent_ok and q.unit is None and high == 1 and 1 < result <= 100:
                # `to = 10`, `en = 50`: a percentage with its `%` forgotten
                helps = (f"a share is written `{q.text}%` or as a fraction, "
                         f"`{result / 100:g}`",)
                fixes = ((q.span, f"{q.text}%"), (q.span, f"{result / 100:g}"))
            self.error("GB113", f"{what} is out of range: {q.text} is not in {rng}", q.span,
                       "out of range", help=helps, fixes=fixes)
            return None
        return result

    def string(self, value, what, example, *, path: bool = False) -> str | None:
        if not isinstance(value, ast.Str):
            self.expect(value, "a string", what, example)
            return None
        if not value.value.strip():
            self.error("GB114", f"{what} must not be empty", value.span, "empty string")
            return None
        if not self.characters(value, what, path=path):
            return None
        return self.rebase(value.value, value.span.path) if path else value.value

    def characters(self, value: ast.Str, what: str, *, path: bool) -> bool:
        """Spec strings become paths, YAML values, shell words and text in people's terminals:
        a path may hold no control character, a name shown to people only printable text
        (spec.limits). Refused, never changed."""
        bad = limits.bad_path_char(value.value) if path else limits.bad_text_char(value.value)
        if bad is None:
            return True
        kind = "a path" if path else "text shown to people"
        rule = ("any character but control characters" if path else
                "printable characters (letters, marks, digits, punctuation, symbols, spaces)")
        self.error("GB118", f"{what} holds the character {limits.describe_char(bad)}", value.span,
                   f"not allowed in {kind}", help=(f"{kind[0].upper()}{kind[1:]} may hold {rule}",))
        return False

    def rebase(self, text: str, written_in: str) -> str:
        """A relative path from an imported file, made relative to the experiment's own file
        (where every path of the compiled experiment starts)."""
        if written_in == self.doc.path or text.startswith("hf:") or posixpath.isabs(text):
            return text
        up = posixpath.relpath(posixpath.dirname(written_in) or ".",
                               posixpath.dirname(self.doc.path) or ".")
        return posixpath.normpath(posixpath.join(up, text))

    def strings(self, value, what, example, *, path: bool = False) -> tuple[str, ...] | None:
        items = value.items if isinstance(value, ast.ListValue) else (value,)
        if isinstance(value, ast.ListValue) and not items:
            self.error("GB114", f"{what} must not be an empty list", value.span, "empty list")
            return None
        if len(items) > limits.MAX_LIST_ITEMS:
            self.error("GB119", f"{what} lists {len(items)} items; at most "
                       f"{limits.MAX_LIST_ITEMS} are allowed", value.span, "too many",
                       help=("a glob such as `\"data/en/*.jsonl\"` names many files at once",))
            return None
        out = []
        for item in items:
            s = self.string(item, what, example, path=path)
            if s is None:
                return None
            out.append(s)
        return tuple(out)

    def choice(self, value, choices: Iterable[str], what, code="GB120") -> str | None:
        choices = tuple(choices)
        if not isinstance(value, ast.Name):
            self.expect(value, "one of " + ", ".join(f"`{c}`" for c in choices), what, choices[0])
            return None
        if value.value not in choices:
            self.error(code, f"unknown {what} `{value.value}`", value.span, f"unknown {what}",
                       **suggestion(value.value, choices, value.span))
            return None
        return value.value

    def boolean(self, value, what) -> bool | None:
        if not isinstance(value, ast.Bool):
            self.expect(value, "`true` or `false`", what, "true")
            return None
        return value.value

    def point(self, value, what, example) -> Point | None:
        if isinstance(value, ast.Quantity) and value.unit == "%":
            pct = float(value.value)
            if not 0 <= pct <= 100:
                self.error("GB130", f"{what} {value.text} is outside 0%–100%", value.span,
                           "outside the run")
                return None
            return Point.make(percent=pct, span=value.span)
        if (isinstance(value, ast.Quantity) and value.unit is None
                and value.text[-1:] not in ("K", "M", "B", "T")):
            # `enter = 90`: the `%` forgotten, or 90 tokens? A bare number is never guessed at
            self.error("GB111", f"{what} {value.text} has no unit", value.span,
                       "a share of training or a number of tokens?",
                       help=(f"write `{value.text}%` for a share of training, or "
                             f"`{value.text} tokens` for a point after that many tokens",),
                       fixes=((value.span, f"{value.text}%"), (value.span, f"{value.text} tokens")))
            return None
        n = self.integer(value, what, example, minimum=0, units=(None, "tokens"),
                         maximum=MAX_TOKENS)
        if n is None:
            return None
        return Point.make(tokens=n, span=value.span)

    # -- the experiment ----------------------------------------------------------------------------

    def document(self) -> Spec | None:
        experiments = []
        for item in self.doc.items:
            if isinstance(item, ast.Import):  # only when lowering a document that was not composed
                self.error("GB105", "imports cannot be resolved here", item.span, "not resolved",
                           help=("check or compile the spec from its file",))
            elif isinstance(item, ast.Block) and item.kind.value == "experiment":
                experiments.append(item)
            elif isinstance(item, ast.Block):
                self.error("GB101", f"unknown top-level block `{item.kind.value}`", item.kind.span,
                           "expected `experiment`",
                           **suggestion(item.kind.value, ["experiment"], item.kind.span))
            else:
                self.error("GB101", f"`{item.key.value}` must be inside the experiment block",
                           item.key.span, "outside `experiment { … }`",
                           help=("move it into `experiment \"name\" { … }`",))
        if not experiments:
            if not any(d.is_error for d in self.diagnostics):
                end = Span.at_offset(self.doc.path, self.doc.text, 0, 0)
                self.error("GB104", "no `experiment` block in this file", end,
                           "expected `experiment \"name\" { … }`")
            return None
        for extra in experiments[1:]:
            self.error("GB102", "a file holds one experiment", extra.kind.span,
                       "second experiment", secondary=[(experiments[0].kind.span, "first here")])
        return self.experiment(experiments[0])

    def experiment(self, block: ast.Block) -> Spec | None:
        name = self.experiment_name(block)
        found, children = self.settings(block, EXPERIMENT_KEYS, EXPERIMENT_BLOCKS,
                                        where="the experiment")
        custom = {}
        grow_blocks, vocab_blocks, language_blocks, phase_blocks, train_blocks = [], [], [], [], []
        for child in children:
            kind = child.kind.value
            if kind == "architecture":
                arch = self.architecture(child, custom)
                if arch is not None:
                    custom[arch.name] = arch
            else:
                {"grow": grow_blocks, "vocab": vocab_blocks, "language": language_blocks,
                 "phase": phase_blocks, "train": train_blocks}[kind].append(child)
        for kind, blocks in (("grow", grow_blocks), ("vocab", vocab_blocks), ("train", train_blocks)):
            for extra in blocks[1:]:
                self.error("GB102", f"`{kind}` is given twice", extra.kind.span, "given again",
                           secondary=[(blocks[0].kind.span, "first here")])

        base_setting = self.require(found, "base", block, "the experiment",
                                    'base = llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"')
        base = self.base(base_setting, custom) if base_setting else None
        growth = self.growth(grow_blocks[0]) if grow_blocks else None
        vocab = self.vocab(vocab_blocks[0]) if vocab_blocks else None
        tokenizer, tokenizer_training = None, None
        if "tokenizer" in found:
            tokenizer, tokenizer_training = self.tokenizer(found["tokenizer"].value)
        languages = self.languages(language_blocks, block)
        codes = {lang.code for lang in languages}
        if len(phase_blocks) > limits.MAX_PHASES:
            self.error("GB119", f"the experiment gives {len(phase_blocks)} phase mixtures; at most "
                       f"{limits.MAX_PHASES} are allowed", phase_blocks[limits.MAX_PHASES].kind.span,
                       "one too many")
            phase_blocks = []
        phases = tuple(p for p in (self.phase(b, codes) for b in phase_blocks) if p is not None)
        train = None
        if train_blocks:
            train = self.train(train_blocks[0])
        else:
            self.error("GB104", "the experiment has no `train` block", block.kind.span,
                       "`train { … }` is required",
                       help=("add `train { sequence = 4096  batch = 256  "
                             "optimizer = adamw(lr = 3e-4)  checkpoint every 1000 steps }`",))
        hw_setting = self.require(found, "hardware", block, "the experiment", "hardware = cs-2 x 1")
        hardware = self.hardware(hw_setting.value) if hw_setting else None

        if any(d.is_error for d in self.diagnostics) or None in (name, base, train, hardware):
            return None
        if not languages:
            return None
        return Spec.make(name=name, base=base, growth=growth, vocab=vocab, tokenizer=tokenizer,
                         tokenizer_training=tokenizer_training,
                         languages=languages, phases=phases, train=train, hardware=hardware,
                         span=block.span,
                         spans={k: s.value.span for k, s in found.items()} | {"name": block.span})

    def experiment_name(self, block: ast.Block) -> str | None:
        labels = block.labels
        if len(labels) != 1 or not isinstance(labels[0], (ast.Str, ast.Name)):
            self.error("GB106", "the experiment needs one name", block.kind.span,
                       "e.g. `experiment \"llama-genba-10b\" { … }`")
            return None
        label = labels[0]
        if not limits.is_identifier(label.value):
            self.error("GB106", f"invalid experiment name {label.value!r}", label.span,
                       "letters, digits, `.`, `_`, `-`; 1–63 characters",
                       help=("the name becomes directory names and cluster job labels, so it must "
                             "start and end with a letter or digit",))
            return None
        return label.value

    # -- base model and growth ---------------------------------------------------------------------

    def architecture(self, block: ast.Block, declared: dict) -> Architecture | None:
        if len(block.labels) != 1 or not isinstance(block.labels[0], (ast.Name, ast.Str)):
            self.error("GB106", "an architecture needs one name", block.kind.span,
                       "e.g. `architecture tiny { … }`")
            return None
        name = block.labels[0].value
        if not limits.is_identifier(name):
            self.error("GB106", f"invalid architecture name {name!r}", block.labels[0].span,
                       "letters, digits, `.`, `_`, `-`; 1–63 characters")
            return None
        if name in BUILTIN or name in declared:
            self.error("GB102", f"architecture `{name}` is already defined", block.labels[0].span,
                       "choose another name")
            return None
        found, _ = self.settings(block, ARCHITECTURE_KEYS, where=f"architecture `{name}`")
        values, spans = {}, {}
        maxima = {"hidden": MAX_WIDTH, "layers": MAX_LAYERS, "heads": MAX_WIDTH,
                  "kv_heads": MAX_WIDTH, "ffn": MAX_WIDTH, "vocab": MAX_VOCAB,
                  "context": MAX_SEQUENCE, "head_dim": MAX_WIDTH}
        for key in ("hidden", "layers", "heads", "kv_heads", "ffn", "vocab"):
            setting = self.require(found, key, block, f"architecture `{name}`", f"{key} = …")
            values[key] = None  # missing: reported, and the architecture is not built
            if setting:
                values[key] = self.integer(setting.value, f"`{key}`", f"{key} = 64",
                                           maximum=maxima[key])
                spans[key] = setting.value.span
        for key, default in (("context", 2048), ("head_dim", None)):
            if key in found:
                values[key] = self.integer(found[key].value, f"`{key}`", f"{key} = 512",
                                           maximum=maxima[key])
                spans[key] = found[key].value.span
                if values[key] is None:
                    return None
            else:
                values[key] = default
        if "tie_embeddings" in found:
            values["tie_embeddings"] = self.boolean(found["tie_embeddings"].value,
                                                    "`tie_embeddings`")
        for key, high in (("rope_theta", 1e12), ("norm_eps", 1.0)):
            if key in found:
                values[key] = self.number(found[key].value, f"`{key}`", f"{key} = 10000",
                                          low=0.0, low_open=True, high=high)
        if any(v is None for k, v in values.items() if k != "head_dim"):
            return None
        hidden, heads, kv = values["hidden"], values["heads"], values["kv_heads"]
        if heads % kv:
            self.error("GB131", f"`heads` ({heads}) must be a multiple of `kv_heads` ({kv})",
                       spans["kv_heads"], "does not divide `heads`",
                       secondary=[(spans["heads"], "heads")])
            return None
        if values["head_dim"] is None:
            if hidden % heads:
                self.error("GB131", f"`hidden` ({hidden}) is not divisible by `heads` ({heads})",
                           spans["hidden"], "no whole head dimension",
                           secondary=[(spans["heads"], "heads")],
                           help=("set `head_dim` explicitly, or change `hidden` or `heads`",))
                return None
            values["head_dim"] = hidden // heads
        if values["head_dim"] % 2:
            self.error("GB131", f"the head dimension {values['head_dim']} must be even (rotary)",
                       spans.get("head_dim", spans["hidden"]), "odd head dimension")
            return None
        return Architecture.make(name=name, builtin=False, rope_scaling=None, span=block.span,
                                 spans=spans, **values)

    def base(self, setting: ast.Setting, declared: dict) -> Base | None:
        value = setting.value
        weights = None
        if isinstance(value, ast.Chain):
            if value.connectors != ("from",) or not isinstance(value.terms[0], ast.Name):
                self.expect(value, "an architecture, optionally `from \"…\"`", "`base`",
                            'llama3.1-8b from "hf:meta-llama/Llama-3.1-8B"')
                return None
            value, weights_value = value.terms
            weights = self.string(weights_value, "the weights after `from`", '"hf:org/model"',
                                  path=True)
            if weights is None or not self.hub_reference(weights, weights_value):
                return None
        if not isinstance(value, ast.Name):
            self.expect(value, "an architecture name", "`base`", "llama3.1-8b")
            return None
        known = {**BUILTIN, **declared}
        arch = known.get(value.value)
        if arch is None:
            hint = suggestion(value.value, known, value.span)
            self.error("GB121", f"unknown base architecture `{value.value}`", value.span,
                       "unknown architecture", fixes=hint["fixes"], help=hint["help"]
                       + ("or declare your own: `architecture NAME { hidden = … layers = … }`",))
            return None
        if weights is None:
            weights = DEFAULT_WEIGHTS.get(arch.name)
        return Base.make(architecture=arch, weights=weights, span=setting.span,
                         spans={"architecture": value.span, "weights": setting.value.span})

    def growth(self, block: ast.Block) -> Growth | None:
        if len(block.labels) != 1 or not isinstance(block.labels[0], ast.Name):
            self.error("GB106", "say how to grow: `grow blocks { … }` or `grow depth { … }`",
                       block.kind.span, "missing method")
            return None
        method = self.choice(block.labels[0], GROW_METHODS, "growth method")
        if method is None:
            return None
        found, _ = self.settings(block, GROW_KEYS[method], where=f"`grow {method}`")
        spans = {k: s.value.span for k, s in found.items()}
        if method == "depth":
            drop_setting = self.require(found, "drop", block, "`grow depth`", "drop = 8")
            drop = (self.integer(drop_setting.value, "`drop`", "drop = 8", maximum=MAX_LAYERS)
                    if drop_setting else None)
            if "train" in found and self.choice(found["train"].value, GROW_TRAIN["depth"],
                                                "training policy") is None:
                return None
            if drop is None:
                return None
            return Growth.make(method="depth", drop=drop, init="copy", train="all", span=block.span,
                               spans=spans)
        add = after = None
        placement = "interleave"
        if "after" in found:
            value = found["after"].value
            if isinstance(value, ast.ListValue) and not value.items:
                self.error("GB114", "`after` must not be an empty list", value.span, "empty list",
                           help=("list base layer indices, e.g. `after = [3, 7, 11]`",))
                return None
            if not isinstance(value, ast.ListValue):
                self.expect(value, "a list of layer indices", "`after`", "after = [3, 7, 11]")
                return None
            if len(value.items) > MAX_LAYERS:
                self.error("GB119", f"`after` lists {len(value.items)} positions; a model has at "
                           f"most {MAX_LAYERS} layers", value.span, "too many")
                return None
            indices = [self.integer(v, "a layer index", "after = [3, 7]", minimum=0,
                                    maximum=MAX_LAYERS) for v in value.items]
            if None in indices:
                return None
            seen = {}
            for i, item in zip(indices, value.items):
                if i in seen:
                    self.error("GB132", f"layer {i} is listed twice in `after`", item.span,
                               "listed again", secondary=[(seen[i], "first here")])
                    return None
                seen[i] = item.span
            after = tuple(indices)
            placement = "explicit"
            spans["after_items"] = tuple(item.span for item in value.items)
            if "place" in found:
                self.error("GB102", "give either `place` or `after`, not both",
                           found["place"].key.span, "conflicts with `after`",
                           secondary=[(found["after"].key.span, "`after` here")])
                return None
        if "add" in found:
            add = self.integer(found["add"].value, "`add`", "add = 8", maximum=MAX_LAYERS)
            if add is None:
                return None
            if after is not None and add != len(after):
                self.error("GB132", f"`add = {add}` but `after` lists {len(after)} layers",
                           found["add"].value.span, "does not match",
                           secondary=[(found["after"].value.span, f"{len(after)} positions")])
                return None
        elif after is not None:
            add = len(after)
        else:
            self.require(found, "add", block, "`grow blocks`", "add = 8")
            return None
        if "place" in found:
            placement = self.choice(found["place"].value, PLACEMENTS, "placement")
            if placement is None:
                return None
        init = "identity"
        if "init" in found:
            init = self.choice(found["init"].value, GROW_INITS, "initialisation")
        train = "all"
        if "train" in found:
            train = self.choice(found["train"].value, GROW_TRAIN["blocks"], "training policy")
        if init is None or train is None:
            return None
        return Growth.make(method="blocks", add=add, placement=placement, after=after or (),
                           init=init, train=train, span=block.span, spans=spans)

    def vocab(self, block: ast.Block) -> VocabExtension | None:
        found, _ = self.settings(block, VOCAB_KEYS, where="`vocab`")
        setting = self.require(found, "add", block, "`vocab`", "add = 27447")
        if setting is None:
            return None
        add = self.integer(setting.value, "`add`", "add = 27447", units=(None, "tokens"),
                           maximum=MAX_VOCAB)
        if ("init" in found
                and self.choice(found["init"].value, VOCAB_INITS, "initialisation") is None):
            return None
        if add is None:
            return None
        return VocabExtension.make(add=add, span=block.span, spans={"add": setting.value.span})

    def tokenizer(self, value) -> tuple[str | None, TokenizerTraining | None]:
        if isinstance(value, ast.Call):
            if self.choice(value.name, TOKENIZER_ALGORITHMS, "tokenizer algorithm") is None:
                return None, None
            args, spans = self.keyword_args(value, {"vocab"})
            if args is None:
                return None, None
            if "vocab" not in args:
                self.error("GB104", "`bpe` needs a vocabulary size", value.name.span,
                           "missing `vocab`", help=("write `bpe(vocab = 1024)`",))
                return None, None
            vocab = self.integer(args["vocab"], "`vocab`", "vocab = 1024", minimum=260,
                                 maximum=MAX_VOCAB)
            if vocab is None:
                return None, None
            return None, TokenizerTraining.make(vocab=vocab, span=value.span, spans=spans)
        path = self.string(value, "`tokenizer`", '"path/to/tokenizer" or bpe(vocab = 1024)',
                           path=True)
        if path is not None and not self.hub_reference(path, value):
            return None, None
        return path, None

    def hub_reference(self, text: str, value) -> bool:
        """A string starting `hf:` must be a Hub reference, `hf:ORG/NAME[@REVISION]`."""
        if not is_hub(text):
            return True
        try:
            parse_hub(text)
        except ValueError as exc:
            self.error("GB123", f"{text!r} is not a Hugging Face Hub reference: {exc}",
                       value.span, "not ORG/NAME[@REVISION]",
                       help=('e.g. "hf:meta-llama/Llama-3.1-8B", or pinned: "hf:ORG/NAME@main", '
                             '"…@v1.0" (a tag) or "…@" and a 40-character commit hash',))
            return False
        return True

    # -- languages and mixtures --------------------------------------------------------------------

    def languages(self, blocks: list[ast.Block], experiment: ast.Block) -> tuple[Language, ...]:
        if not blocks:
            self.error("GB104", "the experiment has no `language` block", experiment.kind.span,
                       "at least one language is required",
                       help=('add `language en "English" { data = "data/en/*.jsonl"  '
                             'tokens = 10B }`',))
            return ()
        if len(blocks) > limits.MAX_LANGUAGES:
            self.error("GB119", f"the experiment declares {len(blocks)} languages; at most "
                       f"{limits.MAX_LANGUAGES} are allowed", blocks[limits.MAX_LANGUAGES].kind.span,
                       "one too many", help=("the schedule solver's work grows fast with the "
                                             "number of languages and phases",))
            return ()
        out, seen = [], {}
        for block in blocks:
            lang = self.language(block)
            if lang is None:
                continue
            if lang.code in seen:
                self.error("GB133", f"language `{lang.code}` is declared twice",
                           lang.where("code"), "declared again",
                           secondary=[(seen[lang.code], "first declared here")])
                continue
            seen[lang.code] = lang.where("code")
            out.append(lang)
        return tuple(out)

    def language(self, block: ast.Block) -> Language | None:
        labels = block.labels
        if not labels or not isinstance(labels[0], ast.Name) or len(labels) > 2 or (
                len(labels) == 2 and not isinstance(labels[1], ast.Str)):
            self.error("GB106", "a language needs a code and optionally a name", block.kind.span,
                       'e.g. `language bar "Bavarian" { … }`')
            return None
        code = labels[0].value
        if not limits.is_language_code(code):
            self.error("GB106", f"invalid language code `{code}`", labels[0].span,
                       "letters, digits and `_`, starting with a letter; at most 32")
            return None
        if len(labels) == 2 and not self.characters(labels[1], "the language's name", path=False):
            return None
        name = labels[1].value if len(labels) == 2 else code
        where = f"language `{code}`"
        found, _ = self.settings(block, LANGUAGE_KEYS, where=where)
        spans = {k: s.value.span for k, s in found.items()} | {"code": labels[0].span}
        ok = True
        data_setting = self.require(found, "data", block, where, f'data = "data/{code}/*.jsonl"')
        sources = (self.strings(data_setting.value, "`data`", f'"data/{code}/*.jsonl"', path=True)
                   if data_setting else None)
        tokens_setting = self.require(found, "tokens", block, where, "tokens = 10B")
        tokens, approx = None, False
        if tokens_setting:
            approx = getattr(tokens_setting.value, "approx", False)
            value = _exact(tokens_setting.value) if approx else tokens_setting.value
            tokens = self.integer(value, "a token budget", "10B", units=(None, "tokens"),
                                  maximum=MAX_TOKENS)
        corpus = None
        if "corpus" in found:
            corpus = self.integer(found["corpus"].value, "`corpus`", "corpus = 20B",
                                  units=(None, "tokens"), maximum=MAX_TOKENS)
            ok &= corpus is not None
        enter = Point.make(percent=0.0)
        exit_ = Point.make(percent=100.0)
        if "enter" in found:
            enter = self.point(found["enter"].value, "the entry point", "enter = 50%")
        if "exit" in found:
            exit_ = self.point(found["exit"].value, "the exit point", "exit = 100%")
        evals = ()
        if "eval" in found:
            evals = self.strings(found["eval"].value, "`eval`", f'"data/{code}/val.jsonl"',
                                 path=True)
        if None in (sources, tokens, enter, exit_, evals) or not ok:
            return None
        return Language.make(code=code, name=name, sources=sources, tokens=tokens, approx=approx,
                             corpus=corpus, enter=enter, exit=exit_, eval=evals, span=block.span,
                             spans=spans)

    def phase(self, block: ast.Block, codes: set[str]) -> PhaseMixture | None:
        if len(block.labels) != 1:
            self.error("GB106", "a phase is named by where it starts", block.kind.span,
                       "e.g. `phase 50% { en = 70%  de = 30% }`")
            return None
        start = self.point(block.labels[0], "the phase start", "phase 50% { … }")
        if start is None:
            return None
        weights, spans, written = {}, {}, {}
        errors_before = sum(d.is_error for d in self.diagnostics)
        for entry in block.entries:
            if isinstance(entry, ast.Block):
                self.error("GB101", "a phase holds only `language = weight` settings",
                           entry.kind.span, "unexpected block")
                continue
            code = entry.key.value
            if code not in codes:
                self.error("GB134", f"unknown language `{code}` in the mixture", entry.key.span,
                           "not a declared language",
                           **(suggestion(code, codes, entry.key.span) if codes else {}))
                continue
            if code in weights:
                self.error("GB102", f"`{code}` is given twice in this phase", entry.key.span,
                           "given again", secondary=[(spans[code], "first here")])
                continue
            w = self.number(entry.value, f"the weight of `{code}`", f"{code} = 50%", low=0, high=1,
                            percent_ok=True)
            if w is not None:
                weights[code] = w
                spans[code] = entry.key.span
                written[code] = entry.value.text
        if sum(d.is_error for d in self.diagnostics) > errors_before:
            return None  # the sum of a mixture with a broken entry says nothing
        if not weights:
            self.error("GB135", "this phase gives no weights", block.kind.span.cover(
                block.labels[0].span), "empty mixture",
                help=("give each active language a weight, e.g. `en = 50%  de = 50%`",))
            return None
        total = sum(weights.values())
        if abs(total - 1) > 1e-6:
            # said the way they were written: percentages as percentages
            percent = all(text.endswith("%") for text in written.values())
            sums = f"{total * 100:.6g}%, not 100%" if percent else f"{total:.6g}, not 1"
            self.error("GB135", f"the weights of this phase sum to {sums}",
                       block.kind.span.cover(block.labels[0].span), "weights must sum to 100%",
                       secondary=[(spans[c], written[c]) for c in weights])
            return None
        return PhaseMixture.make(start=start, weights=weights, span=block.span,
                                 spans=spans | {"start": block.labels[0].span})

    # -- training ----------------------------------------------------------------------------------

    def train(self, block: ast.Block) -> Train | None:
        found, _ = self.settings(block, TRAIN_KEYS, where="`train`")
        spans = {k: s.value.span for k, s in found.items()}
        v = {}
        if "tokens" in found:
            v["tokens"] = self.integer(found["tokens"].value, "the total token count", "100B",
                                       units=(None, "tokens"), maximum=MAX_TOKENS)
        s = self.require(found, "sequence", block, "`train`", "sequence = 4096")
        v["sequence"] = self.integer(s.value, "`sequence`", "sequence = 4096",
                                     units=(None, "tokens"), maximum=MAX_SEQUENCE) if s else None
        seq_value = s.value if s else None
        if (v["sequence"] and isinstance(seq_value, ast.Quantity) and seq_value.text.endswith("K")
                and v["sequence"] % 1000 == 0 and _power_of_two(v["sequence"] // 1000)):
            # `8K` is 8,000 tokens; sequence lengths are powers of two, and 8K usually means 8,192
            meant = 1024 * (v["sequence"] // 1000)
            self.warn("GB911", f"`sequence = {seq_value.text}` is {v['sequence']:,} tokens, not "
                      f"{meant:,}", seq_value.span, f"K is a thousand: {v['sequence']:,}",
                      help=(f"write `sequence = {meant}` for {meant:,} tokens, or "
                            f"`sequence = {v['sequence']}` to keep {v['sequence']:,}",),
                      fixes=((seq_value.span, str(meant)), (seq_value.span, str(v["sequence"]))))
        s = self.require(found, "batch", block, "`train`", "batch = 256")
        v["batch"] = self.integer(s.value, "`batch`", "batch = 256",
                                  units=(None, "sequences"), maximum=MAX_SEQUENCE) if s else None
        s = self.require(found, "optimizer", block, "`train`", "optimizer = adamw(lr = 3e-4)")
        v["optimizer"] = self.optimizer(s.value) if s else None
        if "schedule" in found:
            v["schedule"] = self.schedule(found["schedule"].value)
        else:
            v["schedule"] = (ScheduleSegment.make(kind="constant"),)
        if "precision" in found:
            v["precision"] = self.choice(found["precision"].value, PRECISIONS, "precision")
        if "parallelism" in found:
            v["parallelism"] = self.choice(found["parallelism"].value, PARALLELISMS, "parallelism")
        s = self.require(found, "checkpoint", block, "`train`", "checkpoint every 1000 steps")
        v["checkpoint_every"] = self.integer(s.value, "the checkpoint interval", "1000 steps",
                                             units=("steps", None), maximum=MAX_STEPS) if s else None
        if "eval" in found:
            v["eval_every"] = self.integer(found["eval"].value, "the evaluation interval",
                                           "1000 steps", units=("steps", None), maximum=MAX_STEPS)
        # each count takes the one unit it counts in, or none: `micro_batch = 20 steps` is refused
        for key, example, maximum, unit in (
                ("keep_checkpoints", "keep_checkpoints = 5", MAX_STEPS, None),
                ("eval_steps", "eval_steps = 50", MAX_STEPS, "steps"),
                ("micro_batch", "micro_batch = 20", MAX_SEQUENCE, "sequences")):
            if key in found:
                v[key] = self.integer(found[key].value, f"`{key}`", example,
                                      units=(None, unit), maximum=maximum)
        if "seed" in found:
            v["seed"] = self.integer(found["seed"].value, "`seed`", "seed = 1", minimum=0,
                                     maximum=MAX_SEED)
        if any(x is None for x in v.values()):
            return None
        return Train.make(span=block.span, spans=spans, **v)

    def optimizer(self, value) -> Optimizer | None:
        call = value
        if isinstance(value, ast.Name):
            call = ast.Call(value, (), value.span)
        if not isinstance(call, ast.Call):
            self.expect(value, "an optimizer call", "`optimizer`", "adamw(lr = 3e-4)")
            return None
        kind = self.choice(call.name, OPTIMIZERS, "optimizer")
        if kind is None:
            return None
        args, spans = self.keyword_args(call, OPTIMIZERS[kind])
        if args is None:
            return None
        if "lr" not in args:
            self.error("GB104", f"`{kind}` needs a learning rate", call.name.span, "missing `lr`",
                       help=(f"write `{kind}(lr = 3e-4, …)`",))
            return None
        v = {"kind": kind}
        v["lr"] = self.number(args["lr"], "the learning rate `lr`", "lr = 3e-4", low=0,
                              low_open=True, high=1)
        if v["lr"] is not None and v["lr"] > 0.01:
            self.warn("GB901", f"learning rate {v['lr']:g} is unusually high for continual "
                      "pretraining", args["lr"].span, "high learning rate",
                      help=("continual pretraining of Llama models typically uses 1e-5 … 3e-4",))
        if "betas" in args:
            b = args["betas"]
            if not isinstance(b, ast.TupleValue) or len(b.items) != 2:
                self.expect(b, "a pair `(beta1, beta2)`", "`betas`", "betas = (0.9, 0.95)")
                v["betas"] = None
            else:
                pair = [self.number(x, "a beta", "0.9", low=0, high=1, high_open=True)
                        for x in b.items]
                v["betas"] = None if None in pair else tuple(pair)
        if "eps" in args:
            v["eps"] = self.number(args["eps"], "`eps`", "eps = 1e-8", low=0, low_open=True,
                                   high=1)
        if "weight_decay" in args:
            v["weight_decay"] = self.number(args["weight_decay"], "`weight_decay`",
                                            "weight_decay = 0.1", low=0, high=1)
        if "momentum" in args:
            v["momentum"] = self.number(args["momentum"], "`momentum`", "momentum = 0.9", low=0,
                                        high=1, high_open=True)
        if "clip" in args:
            v["clip"] = self.number(args["clip"], "`clip`", "clip = 1.0", low=0, low_open=True)
        if any(x is None for x in v.values()):
            return None
        return Optimizer.make(span=call.span, spans=spans, **v)

    def several_values(self, named: ast.Arg, extra: ast.Arg) -> None:
        """An unnamed value right after a named one: most often a tuple without its brackets."""
        key = named.key.value
        values, fixes = None, ()
        first = named.value.span
        if first.path == self.doc.path == extra.span.path:
            values = self.doc.text[first.start:extra.span.end]
            fixes = ((Span(first.path, first.line, first.col, extra.span.end_line,
                           extra.span.end_col, first.start, extra.span.end), f"({values})"),)
        self.error("GB115", f"a value after `{key} = …` with no name of its own", extra.span,
                   "unnamed argument",
                   secondary=[(named.key.span, f"`{key}` is given here")],
                   help=(f"several values are a tuple: `{key} = ({values})`" if values else
                         f"several values are a tuple: `{key} = (a, b)`",
                         "or name the argument: `name = value`"), fixes=fixes)

    def keyword_args(self, call: ast.Call, allowed: set[str], positional: int = 0):
        """A call's arguments by name (the first `positional` may be unnamed, as `_0`, `_1`)."""
        args, spans = {}, {}
        for i, arg in enumerate(call.args):
            if arg.key is None:
                if i < positional:
                    args[f"_{i}"] = arg.value
                    spans[f"_{i}"] = arg.value.span
                    continue
                before = call.args[i - 1] if i else None
                if before is not None and before.key is not None:  # `betas = 0.9, 0.95`
                    self.several_values(before, arg)
                    return None, None
                self.error("GB115", f"arguments of `{call.name.value}` must be named",
                           arg.span, "unnamed argument",
                           help=("for example `" + call.name.value + "(" +
                                 ", ".join(f"{a} = …" for a in sorted(allowed)[:2]) + ")`",))
                return None, None
            key = arg.key.value
            if key not in allowed:
                hint = (suggestion(key, allowed, arg.key.span) if allowed else
                        {"help": (f"`{call.name.value}` takes no named arguments",)})
                self.error("GB101", f"`{call.name.value}` has no argument `{key}`", arg.key.span,
                           "unknown argument", **hint)
                return None, None
            if key in args:
                self.error("GB102", f"argument `{key}` is given twice", arg.key.span,
                           "given again", secondary=[(spans[key], "first here")])
                return None, None
            args[key] = arg.value
            spans[key] = arg.value.span
        return args, spans

    def schedule(self, value) -> tuple[ScheduleSegment, ...] | None:
        terms = value.terms if isinstance(value, ast.Chain) else (value,)
        if isinstance(value, ast.Chain) and set(value.connectors) != {"then"}:
            self.expect(value, "pieces joined by `then`", "`schedule`",
                        "warmup(1%) then cosine(to = 10%)")
            return None
        segments = []
        for index, term in enumerate(terms):
            last = index == len(terms) - 1
            call = ast.Call(term, (), term.span) if isinstance(term, ast.Name) else term
            if not isinstance(call, ast.Call):
                self.expect(term, "a schedule piece", "`schedule`", "cosine(to = 10%)")
                return None
            kind = self.choice(call.name, SCHEDULE_PIECES, "schedule piece")
            if kind is None:
                return None
            allowed = {"to"} if kind in ("linear", "cosine") else set()
            args, spans = self.keyword_args(call, allowed, positional=1)
            if args is None:
                return None
            seg = {"kind": kind}
            length = args.get("_0")
            if length is not None:
                if isinstance(length, ast.Quantity) and length.unit == "%":
                    pct = float(length.value)
                    if not 0 < pct <= 100:
                        self.error("GB113", f"a schedule length of {length.text} is not in "
                                   "(0%, 100%]", length.span, "out of range")
                        return None
                    seg["length_percent"] = pct
                elif isinstance(length, ast.Quantity) and length.unit is None:
                    # `warmup(1)`: 1% of training or 1 step? Never guessed
                    self.error("GB111", f"a schedule length {length.text} has no unit",
                               length.span, "expected `%` or `steps`",
                               help=(f"write `{length.text}%` for a share of training, or "
                                     f"`{length.text} steps`",),
                               fixes=((length.span, f"{length.text}%"),
                                      (length.span, f"{length.text} steps")))
                    return None
                else:
                    seg["length_steps"] = self.integer(length, "a schedule length", "2000 steps",
                                                       units=("steps",), maximum=MAX_STEPS)
            elif kind == "warmup" or not last:
                self.error("GB116", f"`{kind}` needs a length here", call.span,
                           "only the last piece may run to the end",
                           help=(f"for example `{kind}(1%)` or `{kind}(2000 steps)`",))
                return None
            if "to" in args:
                seg["to"] = self.number(args["to"], "`to`", "to = 10%", low=0, high=1,
                                        percent_ok=True)
            elif kind == "linear" or kind == "cosine":
                seg["to"] = 0.0
            if any(x is None for x in seg.values()):
                return None
            segments.append(ScheduleSegment.make(span=call.span, spans=spans, **seg))
        if segments[0].kind != "warmup" and any(s.kind == "warmup" for s in segments[1:]):
            bad = next(s for s in segments[1:] if s.kind == "warmup")
            self.error("GB116", "`warmup` can only be the first piece", bad.span, "not first")
            return None
        return tuple(segments)

    # -- hardware ----------------------------------------------------------------------------------

    def hardware(self, value) -> Hardware | None:
        count, nodes = 1, None
        spans = {}
        if isinstance(value, ast.Chain):
            if (value.connectors not in (("x",), ("x", "x"))
                    or not isinstance(value.terms[0], ast.Name)):
                self.expect(value, "a hardware kind, optionally `x N` (or `x N x NODES`)",
                            "`hardware`", "cs-2 x 1")
                return None
            value, count_value, *nodes_value = value.terms
            count = self.integer(count_value, "the number of systems", "cs-2 x 1",
                                 maximum=MAX_SYSTEMS)
            spans["count"] = count_value.span
            if nodes_value:
                nodes = self.integer(nodes_value[0], "the number of nodes", "h100 x 8 x 4",
                                     maximum=MAX_SYSTEMS)
                spans["nodes"] = nodes_value[0].span
                if nodes is None:
                    return None
            if count is None:
                return None
        kind = self.choice(value, HARDWARE_KINDS, "hardware", code="GB122")
        if kind is None:
            return None
        if nodes is not None and kind not in GPU_KINDS and kind != "cpu":
            self.error("GB122", f"`{kind} x {count} x {nodes}`: only GPUs and CPU processes are "
                       "counted per node", spans["nodes"], "no nodes of CS-X systems",
                       help=(f"write `{kind} x {count * nodes}`",))
            return None
        if count * (nodes or 1) > MAX_SYSTEMS:
            self.error("GB113", f"{count * nodes:,} devices is more than the "
                       f"{MAX_SYSTEMS:,} a spec may ask for", value.span, "too many")
            return None
        return Hardware.make(kind=kind, count=count, nodes=nodes, span=value.span, spans=spans)


def _same_shape(hint: dict, names: set[str]) -> dict:
    """A did-you-mean's fix only where the name it writes is of the same shape (a block's name
    for a block, a key for a setting): `hardwre { … }` -> `hardware { … }` would not parse as
    meant, so it stays a help line."""
    return {**hint, "fixes": tuple(f for f in hint["fixes"] if f[1] in names)}


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _exact(q: ast.Quantity) -> ast.Quantity:
    return ast.Quantity(q.value, q.unit, False, q.text, q.span)


def lower(doc: ast.Document) -> tuple[Spec | None, list[Diagnostic]]:
    """The IR for a document, with every diagnostic found (None if there was an error)."""
    lowering = _Lowering(doc)
    spec = lowering.document()
    return spec, lowering.diagnostics


class Loaded(NamedTuple):
    """One experiment of a spec: the spec itself, or one variant of its sweeps."""

    name: str | None  # the variant's name; None when the spec sweeps nothing
    values: dict[str, str]  # swept setting -> value as written
    spec: Spec
    diagnostics: list[Diagnostic]


def load_all(text: str, path: str, read=None, sources: dict[str, str] | None = None
             ) -> list[Loaded]:
    """Parse, resolve imports (through `read`, see spec.compose.Files), expand sweeps and lower.

    Raises SpecError with every diagnostic if any variant has errors; a problem shared by all
    variants is reported once. `sources` receives the text of every file read."""
    from .compose import compose, expand_sweeps

    sources = {} if sources is None else sources
    doc = compose(text, path, read or _no_imports, sources)
    loaded, diagnostics = [], []
    for variant in expand_sweeps(doc, sources):
        spec, found = lower(variant.document)
        diagnostics = unique([*diagnostics, *found])
        if spec is not None:
            loaded.append(Loaded(variant.name, variant.values, spec, found))
    if any(d.is_error for d in diagnostics) or not loaded:
        raise SpecError(diagnostics)
    return loaded


def load(text: str, path: str, read=None, sources: dict[str, str] | None = None
         ) -> tuple[Spec, list[Diagnostic]]:
    """The one experiment of a spec that sweeps nothing; raises SpecError otherwise."""
    (first, *more) = loaded = load_all(text, path, read, sources)
    if more:
        raise SpecError([error(
            "GB109", f"this spec sweeps {len(loaded)} variants; this command takes one experiment",
            first.spec.span, "sweeps values",
            help=("compile it to get one directory per variant",))])
    return first.spec, first.diagnostics


def _no_imports(importer: str, target: str):
    from .compose import ImportProblem

    raise ImportProblem("GB105", f"import {target!r} cannot be resolved without its files",
                        "not resolved", "check or compile the spec from its file")
