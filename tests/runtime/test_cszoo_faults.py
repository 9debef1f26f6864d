"""The faults seen running the real Model Zoo 2.10 by hand, held in CI by the stand-in cszoo, which
refuses what the real one refuses (tests/runtime/fake_cszoo.py):

1. a tied-embedding model (SmolLM2, Llama 3.2 1B/3B) converted without lm_head.weight fails
   phase 1's strict checkpoint load;
2. a tokenizer directory written by transformers 5 ("TokenizersBackend") cannot be loaded by
   Model Zoo's transformers 4.57.1;
5. a failing fit prints `Processed 0 training sample(s)`, which must not end phase 1.

A tiny tied Llama with its transformers-5 tokenizer beside it (a released model's layout) goes
through the cszoo backend and through run.sh; the stand-in is shown to refuse the faulty inputs.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _tools import stand_in_tools

ROOT = Path(__file__).resolve().parent.parent.parent
FAKE = Path(__file__).resolve().parent / "fake_cszoo.py"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SPEC = """\
experiment "tied" {
  architecture tiny-tied {
    hidden = 64  layers = 4  heads = 4  kv_heads = 2  ffn = 256  vocab = 1024  context = 512
    rope_theta = 10000  tie_embeddings = true
  }
  base = tiny-tied from "models/tiny-tied"  # its tokenizer is beside its weights
  grow blocks { add = 2  init = identity }
  language en "English" { data = "data/en/train.jsonl"  tokens = ~8K  eval = "data/en/val.jsonl" }
  language de "German"  { data = "data/de/train.jsonl"  tokens = ~8K  enter = 50% }
  train {
    tokens = 16384  sequence = 128  batch = 8  optimizer = adamw(lr = 1e-3)
    eval every 8 steps  eval_steps = 1  checkpoint every 8 steps  precision = fp32
  }
  hardware = cpu
}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """examples/data, a tied tiny Llama saved by transformers (no lm_head.weight in it) with a
    tokenizer saved by transformers 5 as it is ("TokenizersBackend"), the stand-in tools."""
    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from genbac.runtime.tokenizer import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("tied")
    shutil.copytree(ROOT / "examples/data", root / "data")
    (root / "tied.genba").write_text(SPEC)
    model_dir = root / "models/tiny-tied"
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=1024, hidden_size=64, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rope_theta=10000.0, tie_word_embeddings=True))
    model.save_pretrained(model_dir)
    trained = train_bpe_tokenizer(sorted((root / "data").glob("*/train.jsonl")), 1024,
                                  root / "bpe")
    raw = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(
        str(trained / "tokenizer.json")), bos_token="<|bos|>", eos_token="<|eos|>",
        pad_token="<|pad|>")
    raw.save_pretrained(str(model_dir))  # transformers 5's own files, not made portable
    stand_in_tools(root / "bin")
    return root


def env(root: Path, **extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "HF_HOME": str(root / ".hf"), "PYTHONWARNINGS": "ignore", **extra}


def genbac(root: Path, *args, **extra):
    return subprocess.run([sys.executable, "-m", "genbac", *args], cwd=root, capture_output=True,
                          text=True, timeout=600, env=env(root, **extra))


def test_the_models_files_are_what_breaks_model_zoo(project):
    """The premise: without genbac's handling, the real one would refuse these inputs."""
    assert "lm_head.weight" not in json.dumps(
        sorted(__import__("safetensors").safe_open(
            str(project / "models/tiny-tied/model.safetensors"), "pt").keys()))
    config = json.loads((project / "models/tiny-tied/tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "TokenizersBackend"


def test_tied_model_with_transformers_5_tokenizer_trains_through_the_cszoo_backend(project):
    r = genbac(project, "run", "tied.genba", "-o", "out/backend", "--backend", "cszoo",
               "--tracking-uri", f"sqlite:///{project}/mlflow.db",
               GENBAC_CSZOO=str(project / "bin/cszoo"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = project / "out/backend"
    steps = [s["name"] for s in json.loads((out / "steps.json").read_text())["steps"]]
    assert json.loads((out / "work/state.json").read_text())["done"] == steps
    # the tokenizer Model Zoo was given loads under 4.57, with the same files otherwise
    config = json.loads((out / "work/tokenizer/tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (out / "work/tokenizer/tokenizer.json").read_bytes() == \
        (project / "models/tiny-tied/tokenizer.json").read_bytes()
    # the converter was given the head (a copy of the embedding), and the reason is in train.yaml
    index = json.loads((out / "work/grown/model.safetensors.index.json").read_text())
    assert "lm_head.weight" in index["weight_map"]
    assert "share_embedding_weights: the grown checkpoint carries lm_head.weight" in \
        (out / "cszoo/train.yaml").read_text().replace("\n# ", " ")


def test_tied_model_trains_through_run_sh_as_compiled(project):
    assert genbac(project, "compile", "tied.genba", "-o", "out/script").returncode == 0
    r = subprocess.run(["bash", "out/script/run.sh"], cwd=project, capture_output=True, text=True,
                       timeout=600, env=env(project, CSZOO=str(project / "bin/cszoo"),
                                            GENBAC=str(project / "bin/genbac")))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "genbac: tied finished" in r.stdout


def test_the_stand_in_refuses_a_converted_tied_model_without_its_head(project, tmp_path):
    """What phase 1 did before genbac's grow wrote the head: the strict load fails, and Model Zoo
    prints `Processed 0 training sample(s)` before its traceback."""
    (tmp_path / "grown").mkdir()
    (tmp_path / "grown/model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "model.embed_tokens.weight": "a", "model.norm.weight": "a",
        "model.layers.0.self_attn.q_proj.weight": "a"}}))
    fake = [sys.executable, str(FAKE)]
    subprocess.run([*fake, "checkpoint", "convert", "--model", "llama", "--output-dir",
                    str(tmp_path / "ckpt"), str(tmp_path / "grown/model.safetensors.index.json")],
                   check=True)
    train = json.loads(json.dumps({"trainer": [{"trainer": {
        "init": {"model_dir": str(tmp_path / "md"), "loop": {"max_steps": 2},
                 "checkpoint": {"steps": 2}},
        "fit": {"ckpt_path": str(tmp_path / "ckpt/model_to_cs-2.9.mdl")}}}]}))
    (tmp_path / "train.yaml").write_text(json.dumps(train))  # JSON is YAML
    r = subprocess.run([*fake, "fit", str(tmp_path / "train.yaml")], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert 'Missing key(s) in state_dict: "lm_head.weight"' in r.stdout
    assert r.stdout.index("Processed 0 training sample(s)") < r.stdout.index("Traceback")


def test_the_stand_in_refuses_a_transformers_5_tokenizer(project, tmp_path):
    config = {"setup": {"data": {"type": "local", "source": str(project / "data/en")},
                        "output_dir": str(tmp_path / "out")},
              "processing": {"huggingface_tokenizer": str(project / "models/tiny-tied")}}
    (tmp_path / "pre.yaml").write_text(json.dumps(config))
    r = subprocess.run([sys.executable, str(FAKE), "data_preprocess", "run", "--config",
                        str(tmp_path / "pre.yaml")], capture_output=True, text=True)
    assert r.returncode == 1
    assert "Tokenizer class TokenizersBackend does not exist or is not currently imported" \
        in r.stdout


def test_a_failing_fit_is_blamed_on_its_own_phase(project):
    """The fit fails in phase 1 after printing `Processed 0 training sample(s)`: phase 1 is not
    done and is the step reported, not phase 2."""
    r = genbac(project, "run", "tied.genba", "-o", "out/failing", "--backend", "cszoo",
               "--tracking-uri", f"sqlite:///{project}/mlflow-failing.db",
               GENBAC_CSZOO=str(project / "bin/cszoo"),
               FAKE_CSZOO_FAIL="RuntimeError: something Model Zoo did not like")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "genbac: error: phase-1: " in r.stderr
    done = json.loads((project / "out/failing/work/state.json").read_text())["done"]
    assert "convert" in done and "phase-1" not in done
