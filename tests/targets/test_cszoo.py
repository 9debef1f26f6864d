"""The cszoo target against the facts in shared/reference/modelzoo-2.10.md, plus golden files."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from genbac.compiler.compile import compile_spec
from genbac.compiler.targets.cszoo import make_steps

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"

# Model Zoo 2.10 Llama model keys (reference §1.1 and §8); BaseConfig forbids anything else.
MODEL_KEYS = {
    "name", "vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "attention_module",
    "extra_attention_params", "attention_type", "attention_dropout_rate", "filter_size",
    "nonlinearity", "norm_type", "layer_norm_epsilon", "position_embedding_type", "rotary_dim",
    "rope_theta", "pos_scaling_type", "pos_scaling_factor", "pos_scaling_extra_args",
    "max_position_embeddings", "dropout_rate", "embedding_dropout_rate", "embedding_layer_norm",
    "share_embedding_weights", "use_bias_in_output", "use_ffn_bias", "use_ffn_bias_in_attention",
    "use_projection_bias_in_attention", "initializer_range", "loss_scaling", "loss_weight",
}
INIT_KEYS = {"model_dir", "seed", "backend", "model", "optimizer", "schedulers", "precision", "loop",
             "checkpoint", "logging", "callbacks", "loggers"}
LOADER_KEYS = {"data_processor", "data_dir", "mixture", "batch_size", "shuffle", "shuffle_seed",
               "num_workers", "prefetch_factor", "persistent_workers"}
PREPROCESS_KEYS = {
    "setup": {"data", "mode", "output_dir", "processes", "metadata_files", "image_dir"},
    "processing": {"huggingface_tokenizer", "custom_tokenizer", "tokenizer_params", "max_seq_length",
                   "short_seq_prob", "write_in_batch", "resume_from_checkpoint", "seed",
                   "read_hook", "read_hook_kwargs", "shuffle", "shuffle_seed", "use_ftfy",
                   "ftfy_normalizer", "wikitext_detokenize", "eos_id", "pad_id"},
    "dataset": {"pack_sequences", "use_vsl", "truncate_to_msl"},
}


class UniqueKeyLoader(yaml.SafeLoader):
    """Model Zoo loads YAML with a loader that rejects duplicate keys; so do we."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        assert len(keys) == len(set(keys)), f"duplicate keys in {keys}"
        return super().construct_mapping(node, deep)


def compiled(path: Path, project_dir="../examples"):
    plan, files, _ = compile_spec(path.read_text(), f"examples/{path.name}",
                                  project_dir=project_dir)
    return plan, files


def trainer_phases(files):
    doc = yaml.load(files["cszoo/train.yaml"].decode(), Loader=UniqueKeyLoader)
    assert list(doc) == ["trainer"] and isinstance(doc["trainer"], list)
    return [entry["trainer"] for entry in doc["trainer"]]


@pytest.fixture(scope="module")
def genba(examples):
    return compiled(examples["llama-genba-10b"])


def test_one_trainer_entry_per_phase_with_absolute_max_steps(genba):
    plan, files = genba
    phases = trainer_phases(files)
    assert len(phases) == 2
    assert [p["init"]["loop"]["max_steps"] for p in phases] == [37_536, 41_707]
    for p in phases:
        assert set(p) == {"init", "fit"}
        assert set(p["init"]) <= INIT_KEYS
        assert p["init"]["checkpoint"]["steps"] == 500  # unset = no checkpoint is ever written
        assert p["init"]["model_dir"] == phases[0]["init"]["model_dir"]  # phases chain


def test_checkpoint_states_per_phase(genba):
    first, second = trainer_phases(genba[1])

    def states(p):
        return [c["LoadCheckpointStates"]["load_checkpoint_states"]
                for c in p["init"]["callbacks"] if "LoadCheckpointStates" in c]

    assert states(first) == ["model"]  # the converted HF checkpoint holds only `model`
    assert first["fit"]["ckpt_path"] == "work/ckpt/model_to_cs-2.9.mdl"
    assert states(second) == ["model,optimizer,global_step"]
    assert "dataloader" not in states(second)[0]  # the mixture changes: dataloader state is refused
    assert "ckpt_path" not in second["fit"]  # autoloads the latest checkpoint in model_dir


def test_model_section_is_explicit_llama(genba):
    plan, files = genba
    for p in trainer_phases(files):
        m = p["init"]["model"]
        assert set(m) <= MODEL_KEYS, set(m) - MODEL_KEYS
        assert "norm_first" not in m and "use_ff_layer1_dropout" not in m
        assert m["name"] == "llama" and m["num_hidden_layers"] == 40
        # every default that is wrong for Llama (reference §8, bold) is written out
        assert m["share_embedding_weights"] is False
        assert m["use_ffn_bias"] is False and m["use_ffn_bias_in_attention"] is False
        assert m["use_projection_bias_in_attention"] is False
        assert m["attention_dropout_rate"] == 0.0 and m["dropout_rate"] == 0.0
        assert m["attention_module"] == "multiquery_attention"
        assert m["extra_attention_params"] == {"num_kv_groups": 8}
        assert m["rotary_dim"] == 128 and m["rope_theta"] == 500000.0
        assert m["pos_scaling_type"] == "llama3" and m["pos_scaling_factor"] == 8.0
        assert m["nonlinearity"] == "swiglu" and m["norm_type"] == "rmsnorm"


def test_backend_precision_and_optimizer(genba):
    for p in trainer_phases(genba[1]):
        init = p["init"]
        assert init["backend"]["backend_type"] == "CSX"
        assert init["backend"]["cluster_config"]["num_csx"] == 1
        assert init["precision"]["fp16_type"] == "cbfloat16"
        assert init["precision"]["max_gradient_norm"] == 1.0
        assert init["optimizer"]["AdamW"]["betas"] == [0.9, 0.95]
        assert init["optimizer"]["AdamW"]["weight_decay"] == 0.1


def test_mixtures_and_schedulers_follow_the_plan(genba):
    plan, files = genba
    for p, phase in zip(trainer_phases(files), plan.schedule.phases):
        loader = p["fit"]["train_dataloader"]
        assert set(loader) <= LOADER_KEYS
        assert loader["data_processor"] == "GptHDF5MapDataProcessor"  # exact registry case
        assert loader["batch_size"] == 480
        dirs = {m["data_dir"]: m["weight"] for m in loader["mixture"]}
        assert sum(dirs.values()) == pytest.approx(1.0)
        assert ("work/data/bar" in dirs) == (phase.index == 2)
        sched = p["init"]["schedulers"]
        assert len(sched) == 1
        pieces = sched[0]["SequentialLR"]["schedulers"]
        assert sum(next(iter(s.values()))["total_iters"] for s in pieces) == phase.steps
        vals = p["fit"]["val_dataloader"]
        assert [v["data_dir"] for v in vals] == ["work/data/en-val", "work/data/de-val",
                                                 "work/data/bar-val"]


def test_cpu_rehearsal_uses_cpu_backend(examples):
    plan, files = compiled(examples["tiny-rehearsal"])
    first, second = trainer_phases(files)
    assert first["init"]["backend"] == {"backend_type": "CPU"}
    # no weights: genbac's seeded random base, grown and converted, as under the local backend
    assert first["fit"]["ckpt_path"] == "work/ckpt/model_to_cs-2.9.mdl"
    assert {"LoadCheckpointStates": {"load_checkpoint_states": "model"}} in \
        first["init"]["callbacks"]
    steps = [s["name"] for s in json.loads(files["steps.json"])["steps"]]
    assert steps.index("base") < steps.index("grow") < steps.index("convert") < \
        steps.index("phase-1")
    assert first["init"]["model"]["share_embedding_weights"] is False
    assert first["init"]["model"]["attention_module"] == "multiquery_attention"
    assert "pos_scaling_type" not in first["init"]["model"]  # no rope scaling declared


@pytest.mark.parametrize("hardware", ["cpu", "h100 x 1", "cs-2 x 1"])
def test_validation_interval_keeps_one_data_stream_per_phase_off_csx(examples, hardware):
    """Model Zoo 2.10 restarts the training data after each validation on CPU and GPU (checked
    against the real Model Zoo; see cszoo.eval_frequency), so there a phase validates once, at its
    end; on CS-X the spec's interval stays."""
    text = (examples["tiny-rehearsal"].read_text().replace("hardware = cpu", f"hardware = {hardware}")
            .replace("precision = fp32", "precision = bf16"))  # CS-X trains in mixed precision
    plan, files, _ = compile_spec(text, "t.genba", project_dir=".")
    loops = [p["init"]["loop"] for p in trainer_phases(files)]
    lengths = [ph.end_step - ph.start_step for ph in plan.schedule.phases]
    header = files["cszoo/train.yaml"].decode().split("\ntrainer:")[0]
    if hardware.startswith("cs-"):
        assert [loop["eval_frequency"] for loop in loops] == [20, 20]
        assert "restarts the training data" not in header
    else:
        assert [loop["eval_frequency"] for loop in loops] == lengths == [71, 23]
        assert "# NOTE: validation at each phase's end, not every 20 steps" in header


def test_bf16_on_cpu_is_bfloat16(examples):
    text = examples["tiny-rehearsal"].read_text().replace("precision = fp32", "precision = bf16")
    _, files, _ = compile_spec(text, "t.genba", project_dir=".")
    for p in trainer_phases(files):
        assert p["init"]["precision"]["fp16_type"] == "bfloat16"


def test_preprocess_configs(genba):
    plan, files = genba
    names = sorted(p for p in files if p.startswith("cszoo/preprocess/"))
    assert names == [f"cszoo/preprocess/{n}.yaml" for n in
                     ("bar-val", "bar", "de-val", "de", "en-val", "en")]
    for name in names:
        doc = yaml.load(files[name].decode(), Loader=UniqueKeyLoader)
        for section, keys in doc.items():
            assert set(keys) <= PREPROCESS_KEYS[section], (name, section)
        assert doc["processing"]["max_seq_length"] == 8192
        # the base's tokenizer, downloaded by genbac and imported (the steps below)
        assert doc["processing"]["huggingface_tokenizer"] == "work/tokenizer"
        assert doc["setup"]["mode"] == "pretraining"
    steps = {s.name: s for s in make_steps(plan)}
    download = steps["download-base"]
    assert (download.kind, download.engine, download.outputs) == ("download", "genbac",
                                                                  ("work/hub/base",))
    assert [(i.path, i.root, i.holds) for i in download.inputs] == [
        ("meta-llama/Llama-3.1-8B", "hub", "weights")]
    assert [(i.path, i.root) for i in steps["tokenizer"].inputs] == [("work/hub/base", "compiled")]
    assert steps["tokenizer"].kind == "import-tokenizer"
    assert [(i.path, i.root) for i in steps["grow"].inputs][0] == ("work/hub/base", "compiled")
    assert list(steps).index("download-base") == 0
    assert "download-tokenizer" not in steps  # the tokenizer beside the weights: one download


def test_a_tokenizer_from_another_hub_repository_has_its_own_download(genba):
    plan, _ = genba
    other = plan.model_copy(update={"tokenizer": "hf:org/tok@v2"})
    steps = {s.name: s for s in make_steps(other)}
    assert [(i.path, i.root, i.holds) for i in steps["download-tokenizer"].inputs] == [
        ("org/tok@v2", "hub", "tokenizer")]
    assert [i.path for i in steps["tokenizer"].inputs] == ["work/hub/tokenizer"]


def test_run_script_is_valid_bash_and_shellcheck_clean(genba, tmp_path):
    script = tmp_path / "run.sh"
    script.write_bytes(genba[1]["run.sh"])
    subprocess.run(["bash", "-n", str(script)], check=True)
    shellcheck = shutil.which("shellcheck") or str(Path(os.sys.executable).parent / "shellcheck")
    result = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    text = genba[1]["run.sh"].decode()
    assert ("checkpoint convert --model llama --src-fmt hf --tgt-fmt cs-2.9" in text)
    assert "work/grown/model.safetensors.index.json" in text


def test_spec_strings_cannot_inject_shell_or_yaml(tmp_path):
    evil = '$(touch PWNED)`touch PWNED2`\'; touch PWNED3 #'
    text = f"""
    experiment "evil" {{
      base = smollm2-135m from "{evil}"
      tokenizer = "tok: [x] # not a comment"
      language en {{ data = "{evil}/*.jsonl" tokens = 10K }}
      train {{ sequence = 128 batch = 8 optimizer = adamw(lr = 1e-4) checkpoint every 5 steps }}
      hardware = cpu
    }}"""
    _, files, _ = compile_spec(text, "evil.genba", project_dir=".")
    out = tmp_path / "out"
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    # the stub tools record nothing and succeed: only the shell around them is under test
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cszoo", "genbac"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    result = subprocess.run(["bash", str(out / "run.sh"), "--dry-run"], capture_output=True,
                            text=True, cwd=tmp_path, env={**os.environ, "CSZOO": str(
                                bin_dir / "cszoo"), "GENBAC": str(bin_dir / "genbac")})
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.rglob("PWNED*"))
    # spec paths never reach the shell: run.sh names steps, genbac reads them from steps.json
    assert "PWNED" not in files["run.sh"].decode()
    steps = json.loads(files["steps.json"])["steps"]
    assert next(s for s in steps if s["name"] == "stage-en")["inputs"][0]["path"] == \
        f"{evil}/*.jsonl"
    doc = yaml.safe_load(files["cszoo/preprocess/en.yaml"].decode())
    assert doc["processing"]["huggingface_tokenizer"] == "work/tokenizer"


@pytest.mark.parametrize("name", ["llama-genba-10b", "tiny-rehearsal"])
def test_golden_files(examples, name):
    """Compiled output is compared byte for byte; GENBAC_UPDATE_GOLDEN=1 rewrites the goldens."""
    _, files = compiled(examples[name])
    golden = GOLDEN / name
    if os.environ.get("GENBAC_UPDATE_GOLDEN"):
        shutil.rmtree(golden, ignore_errors=True)
        for rel, data in files.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_bytes(data)
    on_disk = {p.relative_to(golden).as_posix(): p.read_bytes()
               for p in golden.rglob("*") if p.is_file()}
    assert sorted(on_disk) == sorted(files)
    for rel in files:
        assert files[rel] == on_disk[rel], f"{rel} differs from tests/fixtures/golden/{name}"
