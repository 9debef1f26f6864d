"""The Cerebras Model Zoo 2.10 target: Plan -> trainer YAML, preprocessing YAMLs and run.sh.

Facts followed here are in shared/reference/modelzoo-2.10.md: the multi-phase `trainer:` list (§4),
absolute per-phase `loop.max_steps`, schedulers that restart per phase, `checkpoint.steps` always set
(otherwise nothing is saved), `LoadCheckpointStates: model` only for the phase that starts from the
converted base checkpoint and `model,optimizer,global_step` (never `dataloader`) where the mixture
changes, every Llama default that differs from Model Zoo's written out (§8), `cbfloat16` on CS-X and
`bfloat16` on CPU/GPU, and the HF -> cs-2.9 checkpoint conversion (§5).

All paths in the generated files are relative to the compiled directory (run.sh changes into it);
they come from compiler/artifact.py, as the step plan does.

Steps. Every run starts from a Hugging Face checkpoint in work/grown, converted for Model Zoo:
the spec's base weights grown as planned (or copied, when nothing grows), or a seeded random base
grown the same way when the base has no weights. So both backends train the same initial weights,
and phase 1 always loads the converted checkpoint (model state only).
"""

from __future__ import annotations

import textwrap

from genbac.compiler.artifact import (BASE, BASELINE_DIR, BASELINE_YAML, CKPT_DIR, CONVERTED,
                                      GROWN, HUB_BASE, HUB_TOKENIZER, MODEL_DIR, PLAN, RDZV_PORT,
                                      RUN_SH, SLURM_SH, TOKENIZER, TRAIN_YAML, Input, Step,
                                      data_dir, job_name, preprocess_config, raw_dir)
from genbac.compiler.plan import Phase, Plan
from genbac.spec.diagnostics import Diagnostic, error, warning

from . import Target, register
from .render import render

READ_HOOK = "cerebras.modelzoo.data_preparation.data_preprocessing.hooks:text_read_hook"


def check(plan: Plan) -> list[Diagnostic]:
    """What this target cannot express although the spec is valid."""
    arch = plan.architecture
    out = []
    if plan.tokenizer is None and plan.tokenizer_training is None:
        out.append(error(
            "GB181", "preprocessing for Model Zoo needs a tokenizer: the base has no weights to "
            "take one from", plan.spec.base.where("architecture"), "no tokenizer",
            help=('add `tokenizer = "path/to/tokenizer"` or `tokenizer = bpe(vocab = …)`',)))
    if plan.spec.growth is not None and plan.spec.growth.train == "new":
        out.append(warning(
            "GB910", "Model Zoo 2.10 has no setting that freezes the base blocks: under `cszoo "
            "fit` every block trains; `genbac run` (local backend) freezes them as asked",
            plan.spec.growth.where("train"), "not expressible in Model Zoo"))
    if arch.head_dim * arch.heads != arch.hidden:
        out.append(error(
            "GB180", f"Model Zoo's Llama needs head_dim = hidden / heads ({arch.hidden} / "
            f"{arch.heads}), but {arch.name} has head_dim {arch.head_dim}",
            arch.spans.get("head_dim") or plan.spec.base.where("architecture"),
            "not supported by the cszoo target"))
    return out


def backend(plan: Plan) -> dict:
    hw = plan.spec.hardware
    if hw.is_csx:
        return {"backend_type": "CSX",
                "cluster_config": {"num_csx": hw.count, "job_labels": [f"name={plan.name}"]}}
    if hw.is_gpu:
        gpu = {"backend_type": "GPU"}
        if hw.count > 1:
            gpu["enable_distributed"] = True  # data parallel over the node's GPUs (torchrun)
        return gpu
    return {"backend_type": "CPU"}


def model_section(plan: Plan) -> dict:
    """Llama in Model Zoo's terms, every default that is wrong for Llama written out."""
    arch = plan.architecture
    growth = plan.growth
    m = {
        "name": "llama",
        "vocab_size": growth.vocab,
        "hidden_size": arch.hidden,
        "num_hidden_layers": growth.layers,
        "num_heads": arch.heads,
    }
    if arch.kv_heads != arch.heads:
        m["attention_module"] = "multiquery_attention"
        m["extra_attention_params"] = {"num_kv_groups": arch.kv_heads}
    else:
        m["attention_module"] = "aiayn_attention"
    m |= {
        "attention_type": "scaled_dot_product",
        "attention_dropout_rate": 0.0,
        "filter_size": arch.ffn,
        "nonlinearity": "swiglu",
        "norm_type": "rmsnorm",
        "layer_norm_epsilon": arch.norm_eps,
        "position_embedding_type": "rotary",
        "rotary_dim": arch.head_dim,
        "rope_theta": arch.rope_theta,
    }
    if arch.rope_scaling is not None:
        rs = arch.rope_scaling
        m["pos_scaling_type"] = rs.type
        m["pos_scaling_factor"] = rs.factor
        m["pos_scaling_extra_args"] = {
            "low_freq_factor": rs.low_freq_factor,
            "high_freq_factor": rs.high_freq_factor,
            "original_max_position_embeddings": rs.original_max_position,
        }
    m |= {
        "max_position_embeddings": plan.schedule.sequence,
        "dropout_rate": 0.0,
        "embedding_dropout_rate": 0.0,
        "embedding_layer_norm": False,
        "share_embedding_weights": arch.tie_embeddings,
        "use_bias_in_output": False,
        "use_ffn_bias": False,
        "use_ffn_bias_in_attention": False,
        "use_projection_bias_in_attention": False,
        "initializer_range": 0.02,
        "loss_scaling": "num_tokens",
        "loss_weight": 1.0,
    }
    return m


def optimizer_section(plan: Plan) -> dict:
    opt = plan.spec.train.optimizer
    if opt.kind == "sgd":
        return {"SGD": {"momentum": opt.momentum, "weight_decay": opt.weight_decay}}
    name = {"adamw": "AdamW", "adam": "Adam"}[opt.kind]
    kwargs = {"betas": list(opt.betas), "eps": opt.eps, "weight_decay": opt.weight_decay}
    if opt.kind == "adamw":
        kwargs["correct_bias"] = True  # Adam warns about it as unused; AdamW takes it
    return {name: kwargs}


def schedulers(phase: Phase) -> list[dict]:
    pieces = []
    for piece in phase.lr:
        if piece.kind == "constant":
            pieces.append({"ConstantLR": {"learning_rate": piece.start_lr,
                                          "total_iters": piece.steps}})
        elif piece.kind == "linear":
            pieces.append({"LinearLR": {"initial_learning_rate": piece.start_lr,
                                        "end_learning_rate": piece.end_lr,
                                        "total_iters": piece.steps}})
        else:
            pieces.append({"CosineDecayLR": {"initial_learning_rate": piece.start_lr,
                                             "end_learning_rate": piece.end_lr,
                                             "total_iters": piece.steps}})
    if len(pieces) == 1:
        return pieces
    return [{"SequentialLR": {"schedulers": pieces}}]


def precision_section(plan: Plan) -> dict:
    train = plan.spec.train
    if train.precision == "fp32":
        section = {"enabled": False}
    else:
        fp16_type = "float16" if train.precision == "fp16" else (
            "cbfloat16" if plan.spec.hardware.is_csx else "bfloat16")
        section = {"enabled": True, "fp16_type": fp16_type, "loss_scaling_factor": "dynamic",
                   "log_loss_scale": True}
    if train.optimizer.clip is not None:
        section["max_gradient_norm"] = train.optimizer.clip
    return section


def num_workers(plan: Plan) -> int:
    hw = plan.spec.hardware
    return 8 if hw.is_csx else (0 if hw.kind == "cpu" else 4)


def val_dataloaders(plan: Plan) -> list[dict]:
    return [{
        "data_processor": "GptHDF5MapDataProcessor",
        "data_dir": data_dir(lang.code, "val"),
        "batch_size": plan.schedule.batch,
        "shuffle": False,
        "num_workers": num_workers(plan),
    } for lang in plan.spec.languages if lang.eval]


def eval_frequency(plan: Plan, phase: Phase) -> int:
    """Steps between validations. On CPU and GPU backends Model Zoo 2.10 trains each stretch between
    two validations with a new iterator over the training data, which starts again at the
    dataloader's initial position: with validation every 20 steps, every 20 steps see the same
    160 samples (measured: the losses of steps 21-23 equal those of a resume from checkpoint 20
    whose position is set to 0), and a resume, which restores the position saved in the
    checkpoint, trains on other data than the uninterrupted run. So there the phase is one stretch,
    validated at its end. On CS-X the spec's interval stays: there each stretch starts from the
    dataloader state the previous one ended with (cerebras.pytorch's appliance backend sends it as
    the run request's initial_state; read in its code, not run here)."""
    if plan.spec.hardware.is_csx:
        return plan.eval_every
    return max(1, phase.end_step - phase.start_step)


def phase_trainer(plan: Plan, phase: Phase) -> dict:
    train = plan.spec.train
    first = phase.index == 1
    callbacks = []
    if plan.spec.hardware.is_csx and train.micro_batch:
        flag = {"csx.performance.micro_batch_size": train.micro_batch}
        callbacks += [{"ScopedTrainFlags": dict(flag)}, {"ScopedValidateFlags": dict(flag)}]
    if first:
        callbacks.append({"LoadCheckpointStates": {"load_checkpoint_states": "model"}})
    else:
        callbacks.append({"LoadCheckpointStates":
                          {"load_checkpoint_states": "model,optimizer,global_step"}})
    if train.keep_checkpoints:
        callbacks.append({"KeepNCheckpoints": {"n": train.keep_checkpoints}})
    vals = val_dataloaders(plan)
    loop = {"max_steps": phase.end_step}
    if vals:
        loop |= {"eval_frequency": eval_frequency(plan, phase), "eval_steps": train.eval_steps}
    init = {
        "model_dir": MODEL_DIR,
        "seed": train.seed,
        "backend": backend(plan),
        "model": model_section(plan),
        "optimizer": optimizer_section(plan),
        "schedulers": schedulers(phase),
        "precision": precision_section(plan),
        "loop": loop,
        "checkpoint": {"steps": plan.checkpoint_every, "save_initial_checkpoint": False,
                       "disable_strict_checkpoint_loading": False},
        "logging": {"log_steps": 1 if plan.schedule.total_steps <= 1000 else 10},
    }
    if callbacks:
        init["callbacks"] = callbacks
    mixture = [{"data_dir": data_dir(share.code), "weight": share.weight}
               for share in phase.shares if share.sequences > 0]
    train_loader = {"data_processor": "GptHDF5MapDataProcessor"}
    if len(mixture) == 1:
        train_loader["data_dir"] = mixture[0]["data_dir"]
    else:
        train_loader["mixture"] = mixture
    train_loader |= {"batch_size": plan.schedule.batch, "shuffle": True,
                     "shuffle_seed": train.seed, "num_workers": num_workers(plan)}
    fit = {}
    if first:
        fit["ckpt_path"] = CONVERTED
    fit["train_dataloader"] = train_loader
    if vals:
        fit["val_dataloader"] = vals
    return {"trainer": {"init": init, "fit": fit}}


def baseline_trainer(plan: Plan) -> dict:
    """`cszoo validate_all` of the converted checkpoint on every language's validation data: the
    step-0 baseline (runtime/baseline.py). Phase 1's model, backend, precision and seed, without
    anything that trains, in a model_dir of its own so that its event files stay apart from the
    fit's."""
    train = plan.spec.train
    precision = {k: v for k, v in precision_section(plan).items() if k != "max_gradient_norm"}
    init = {"seed": train.seed, "backend": backend(plan), "model": model_section(plan),
            "precision": precision, "model_dir": BASELINE_DIR,
            "loop": {"eval_steps": train.eval_steps}}
    callbacks = []
    if plan.spec.hardware.is_csx and train.micro_batch:
        callbacks.append({"ScopedValidateFlags": {"csx.performance.micro_batch_size":
                                                  train.micro_batch}})
    callbacks.append({"LoadCheckpointStates": {"load_checkpoint_states": "model"}})
    init["callbacks"] = callbacks
    return {"trainer": {"init": init, "validate_all": {"val_dataloaders": val_dataloaders(plan),
                                                       "ckpt_paths": [CONVERTED]}}}


def preprocess_config_section(plan: Plan, source_dir: str, output_dir: str) -> dict:
    tokenizer = TOKENIZER  # the tokenizer step trains or imports (a download) it there
    return {
        "setup": {"data": {"type": "local", "source": source_dir}, "mode": "pretraining",
                  "output_dir": output_dir},
        "processing": {
            "huggingface_tokenizer": tokenizer,
            "max_seq_length": plan.schedule.sequence,
            "short_seq_prob": 0.0,
            "write_in_batch": True,
            "resume_from_checkpoint": False,
            "seed": plan.spec.train.seed,
            "read_hook": READ_HOOK,
            "read_hook_kwargs": {"text_key": "text"},
            "shuffle": False,
            "use_ftfy": True,
            "ftfy_normalizer": "NFC",
            "wikitext_detokenize": False,
        },
        "dataset": {"pack_sequences": True},
    }


def notes(plan: Plan) -> list[str]:
    out = []
    if plan.architecture.tie_embeddings:
        out.append("share_embedding_weights: the grown checkpoint carries lm_head.weight, a copy "
                   "of the embedding (genbac grow), because Model Zoo 2.10's llama converter "
                   "writes none for a tied model and phase 1's strict load expects it")
    if plan.spec.growth is not None and plan.spec.growth.train == "new":
        out.append("the spec trains only the new blocks; Model Zoo trains all of them (GB910)")
    if not plan.spec.hardware.is_csx and any(lang.eval for lang in plan.spec.languages):
        out.append(f"validation at each phase's end, not every {plan.eval_every} steps: on "
                   "CPU and GPU, Model Zoo restarts the training data after each validation")
    return out


def weights_input(plan: Plan) -> Input:
    """The checkpoint the grow step starts from."""
    weights = plan.base_weights
    if weights is None:
        return Input.make(path=BASE, holds="weights")
    if weights.startswith("hf:"):
        return Input.make(path=weights[3:], root="hub", holds="weights")
    return Input.make(path=weights, root="project", holds="weights")


def tokenizer_input(plan: Plan) -> Input | None:
    tokenizer = plan.tokenizer
    if tokenizer is None:
        return None
    if tokenizer.startswith("hf:"):
        return Input.make(path=tokenizer[3:], root="hub", holds="tokenizer")
    return Input.make(path=tokenizer, root="project", holds="tokenizer")


def make_steps(plan: Plan) -> list[Step]:
    """[download-base] -> [download-tokenizer] -> tokenizer -> stage + prepare per job -> [base] ->
    grow -> convert -> [baseline] -> phase 1 … N."""
    steps: list[Step] = []

    def genbac_step(name: str, kind: str, **fields) -> Step:
        return Step.make(name=name, kind=kind, engine="genbac", argv=("genbac", "step", ".", name),
                         **fields)

    tokenizer_ready: tuple[Input, ...] = ()
    weights = weights_input(plan)
    if weights.root == "hub":  # first: the tokenizer may be the one beside the weights
        steps.append(genbac_step("download-base", "download", inputs=(weights,),
                                 outputs=(HUB_BASE,)))
        weights = Input.make(path=HUB_BASE, holds="weights")
    if plan.tokenizer_training is not None:
        steps.append(genbac_step("tokenizer", "tokenizer", inputs=tuple(
            Input.make(path=p, root="project", holds="files")
            for lang in plan.spec.languages for p in lang.sources), outputs=(TOKENIZER,)))
        tokenizer_ready = (Input.make(path=TOKENIZER, holds="tokenizer"),)
    elif (source := tokenizer_input(plan)) is not None:
        if source.root == "hub":  # downloaded by genbac for every engine, then imported
            if plan.tokenizer == plan.base_weights:  # beside the weights: one download
                source = Input.make(path=HUB_BASE, holds="tokenizer")
            else:
                steps.append(genbac_step("download-tokenizer", "download", inputs=(source,),
                                         outputs=(HUB_TOKENIZER,)))
                source = Input.make(path=HUB_TOKENIZER, holds="tokenizer")
        steps.append(genbac_step("tokenizer", "import-tokenizer", inputs=(source,),
                                 outputs=(TOKENIZER,)))
        tokenizer_ready = (Input.make(path=TOKENIZER, holds="tokenizer"),)

    for lang in plan.spec.languages:
        for split, patterns in (("train", lang.sources), ("val", lang.eval)):
            if not patterns:
                continue
            job = job_name(lang.code, split)
            steps.append(genbac_step(
                f"stage-{job}", "stage", language=lang.code, split=split,
                inputs=tuple(Input.make(path=p, root="project", holds="files") for p in patterns),
                outputs=(raw_dir(job),)))
            steps.append(Step.make(
                name=f"prepare-{job}", kind="prepare", engine="cszoo", language=lang.code,
                split=split, argv=("cszoo", "data_preprocess", "run", "--config",
                                   preprocess_config(job)),
                inputs=(Input.make(path=raw_dir(job), holds="files"), *tokenizer_ready),
                outputs=(data_dir(lang.code, split),), fresh=True))

    if plan.base_weights is None:
        steps.append(genbac_step("base", "base", outputs=(BASE,)))
    # grown as planned, or copied when nothing grows: the converter reads the sharded index
    steps.append(genbac_step("grow", "grow", inputs=(weights, Input.make(path=PLAN)),
                             outputs=(GROWN,)))
    steps.append(Step.make(
        name="convert", kind="convert", engine="cszoo",
        argv=("cszoo", "checkpoint", "convert", "--model", "llama", "--src-fmt", "hf",
              "--tgt-fmt", "cs-2.9", "--config", f"{GROWN}/config.json", "--output-dir",
              CKPT_DIR, f"{GROWN}/model.safetensors.index.json"),
        inputs=(Input.make(path=GROWN, holds="weights"),), outputs=(CONVERTED,)))
    data = tuple(Input.make(path=data_dir(lang.code, split)) for lang in plan.spec.languages
                 for split in ("train", "val") if (lang.sources if split == "train" else lang.eval))
    val_data = tuple(Input.make(path=data_dir(lang.code, "val"))
                     for lang in plan.spec.languages if lang.eval)
    if val_data:
        steps.append(Step.make(
            name="baseline", kind="baseline", engine="cszoo",
            argv=("cszoo", "validate_all", BASELINE_YAML),
            inputs=(Input.make(path=CONVERTED), Input.make(path=BASELINE_YAML), *val_data),
            outputs=(BASELINE_DIR,), fresh=True))
    for phase in plan.schedule.phases:
        steps.append(Step.make(
            name=f"phase-{phase.index}", kind="phase", engine="cszoo", phase=phase.index,
            process="fit", argv=("cszoo", "fit", TRAIN_YAML),
            inputs=(Input.make(path=CONVERTED), Input.make(path=TRAIN_YAML), *data),
            outputs=(MODEL_DIR,)))
    return steps


@register
class CszooTarget(Target):
    name = "cszoo"

    def check(self, plan: Plan) -> list[Diagnostic]:
        return check(plan)

    def steps(self, plan: Plan) -> list[Step]:
        return make_steps(plan)

    def files(self, plan: Plan, steps: list[Step], *, spec_file: str, project_dir: str
              ) -> dict[str, bytes]:
        return generate(plan, steps, spec_file=spec_file, project_dir=project_dir)


def generate(plan: Plan, steps: list[Step], *, spec_file: str, project_dir: str
             ) -> dict[str, bytes]:
    common = {"version": plan.genbac_version, "spec_file": spec_file, "spec_hash": plan.spec_hash,
              "name": plan.name}
    files: dict[str, bytes] = {}
    trainer = {"trainer": [phase_trainer(plan, phase) for phase in plan.schedule.phases]}
    files[TRAIN_YAML] = render(
        "cszoo/train.yaml.j2", trainer=trainer, phases=plan.schedule.phases,
        notes=notes(plan), total_steps=plan.schedule.total_steps, batch=plan.schedule.batch,
        sequence=plan.schedule.sequence, **common)
    if any(step.kind == "baseline" for step in steps):
        files[BASELINE_YAML] = render(
            "cszoo/baseline.yaml.j2", trainer=baseline_trainer(plan), **common)
    for step in steps:
        if step.kind != "prepare":
            continue
        lang = plan.spec.language(step.language)
        source_dir, output_dir = raw_dir(step.job), data_dir(step.language, step.split)
        config_path = preprocess_config(step.job)
        files[config_path] = render(
            "cszoo/preprocess.yaml.j2", config=preprocess_config_section(plan, source_dir,
                                                                         output_dir),
            what=f"{lang.name} ({lang.code}, {step.split})", source_dir=source_dir,
            output_dir=output_dir, config_path=config_path, **common)
    files[RUN_SH] = render("cszoo/run.sh.j2", groups=run_sh_groups(steps),
                             project_dir=project_dir, **common)
    job = slurm_job(plan)
    if job is not None:
        files[SLURM_SH] = render("slurm/slurm.sh.j2", **job, **common)
    return files


def slurm_job(plan: Plan) -> dict | None:
    """slurm.sh's settings, for experiments that train on GPUs or on several nodes (a CS-X
    system has its own cluster manager); None for the others."""
    hw, p = plan.spec.hardware, plan.parallelism
    nodes = hw.nodes or 1
    if not hw.is_gpu and nodes == 1:
        return None
    if p is not None:
        training = (f"Training: {p.strategy.upper()} over {p.devices} {hw.kind} GPUs (shards of "
                    f"{p.shard}, {p.replicas} replica{'s' if p.replicas != 1 else ''}), "
                    f"micro-batch {p.micro_batch} x {p.accumulation}, activation checkpointing "
                    f"{'on' if p.activation_checkpointing else 'off'}, about "
                    f"{p.memory.total / 1e9:.1f} GB per GPU (`genbac explain` says why).")
    else:
        kind = "CPU processes (gloo)" if hw.kind == "cpu" else f"{hw.kind} GPUs"
        training = (f"Training: {(plan.spec.train.parallelism or 'ddp').upper()} over "
                    f"{hw.devices} {kind}.")
    # the job name is the experiment's, one word of letters, digits, `.`, `_`, `-` (GB106)
    return {"nodes": nodes, "per_node": hw.count, "gpus_per_node": hw.count if hw.is_gpu else 0,
            "port": RDZV_PORT, "job_name": plan.name, "training": textwrap.wrap(training, 96)}


def run_sh_groups(steps: list[Step]) -> list[dict]:
    """run.sh's lines: one per step, and one per process that does several steps (the phases of
    one `cszoo fit`), which stamps them all done when it succeeds."""
    groups: list[dict] = []
    for step in steps:
        if step.process and groups and groups[-1]["process"] == step.process:
            groups[-1]["names"].append(step.name)
            continue
        groups.append({"names": [step.name], "process": step.process, "argv": step.argv,
                       "fresh": step.outputs[0] if step.fresh else None})
    return groups
