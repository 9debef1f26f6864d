"""Sharded training (`parallelism = fsdp` on `cpu x 2`): real torchrun, real gloo, real FSDP2 and
DCP, real `genbac run`.

Two FSDP processes must reach the weights of one process (fp32, same global batches) within 1e-6;
MLflow gets every step once; the phase's Hugging Face export loads in transformers with the trained
model's logits; a rank killed with SIGKILL stops the job and a rerun resumes to the uninterrupted
run's exact weights; a checkpoint resumes at another world size, sharded into whole and whole
into sharded; and `--compile` (torch.compile of the sharded model) trains as one process does. The pieces in one process: test_sharding.py."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_ddp import SPEC, env_for, final_weights, genbac_run, mlflow_runs, worker_pid
from test_run import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
# the DDP test's experiment, shorter (rounding grows with the steps: 23 keep it under 1e-6) and
# sharded where asked
SHORT = SPEC.replace("tokens = ~14K", "tokens = ~6K").replace("tokens    = 28K", "tokens    = 12K")
STEPS = 23  # 12K tokens / (8 × 64)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def project(dst: Path, hardware: str, parallelism: str | None) -> Path:
    for code in ("en", "de"):
        shutil.copytree(ROOT / "examples/data" / code, dst / "data" / code)
    text = SHORT.format(hardware=hardware)
    if parallelism:
        text = text.replace("    seed = 7\n", f"    seed = 7\n    parallelism = {parallelism}\n")
    (dst / "fsdp.genba").write_text(text)
    return dst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same experiment run uninterrupted by one process and by two FSDP processes."""
    out = {}
    for name, hardware, parallelism in (("one", "cpu", None), ("fsdp", "cpu x 2", "fsdp")):
        cwd = project(tmp_path_factory.mktemp(name), hardware, parallelism)
        r = genbac_run(cwd, "fsdp.genba", "-o", "out")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out[name] = cwd, r
    return out


def test_two_fsdp_processes_reach_the_weights_of_one(runs):
    (one, _), (two, r) = runs["one"], runs["fsdp"]
    assert "2 processes, FSDP (gloo), through torchrun" in r.stdout
    name_one, w_one = final_weights(one)
    name_two, w_two = final_weights(two)
    assert name_one == name_two == f"step_{STEPS:08d}"
    assert w_one.keys() == w_two.keys()
    diff = max((w_one[k] - w_two[k]).abs().max().item() for k in w_one)
    print(f"\nmax |Δ| over all {len(w_one)} parameter tensors, 1 vs 2 FSDP processes: {diff:.3g}")
    assert diff < 1e-6
    moved = max((w_two[k] - v).abs().max().item() for k, v in final_weights_of_grown(two).items())
    assert moved > 1e-2  # it trained
    ckpt = two / "out/work/checkpoints" / name_two
    state = json.loads((ckpt / "state.json").read_text())
    assert (state["world_size"], state["parallelism"]) == (2, "fsdp")
    assert sorted(p.name for p in ckpt.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    # every step once in MLflow, the same curve as one process
    client, by_name = mlflow_runs(two)
    assert by_name["phase-1"].info.status == "FINISHED"
    loss_two = client.get_metric_history(by_name["phase-1"].info.run_id, "loss")
    assert sorted(m.step for m in loss_two) == list(range(1, STEPS + 1))
    client_one, by_name_one = mlflow_runs(one)
    loss_one = client_one.get_metric_history(by_name_one["phase-1"].info.run_id, "loss")
    for a, b in zip(sorted((m.step, m.value) for m in loss_one),
                    sorted((m.step, m.value) for m in loss_two)):
        assert a[0] == b[0] and abs(a[1] - b[1]) < 1e-5, (a, b)
    # validation needs every rank under FSDP; rank 0 logs it: the baseline and the end
    val = client.get_metric_history(by_name["ddp"].info.run_id, "val_loss/en")
    assert sorted(m.step for m in val) == [0, 20, STEPS]
    val_one = client_one.get_metric_history(by_name_one["ddp"].info.run_id, "val_loss/en")
    for a, b in zip(sorted((m.step, m.value) for m in val_one), sorted((m.step, m.value)
                                                                       for m in val)):
        assert a[0] == b[0] and b[1] == pytest.approx(a[1], rel=1e-5)


def final_weights_of_grown(cwd: Path):
    from safetensors.torch import load_file

    grown = cwd / "out/work/grown"
    return {k: v for f in grown.glob("*.safetensors") for k, v in load_file(str(f)).items()}


def test_the_phase_export_loads_in_transformers_with_the_trained_logits(runs):
    import torch
    from transformers import LlamaForCausalLM

    two, _ = runs["fsdp"]
    export = two / "out/work/export/phase-1"
    index = json.loads((export / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["model.norm.weight"] == "model-00001-of-00001.safetensors"
    loaded = LlamaForCausalLM.from_pretrained(export)
    trained = LlamaForCausalLM.from_pretrained(two / "out/work/grown")
    trained.load_state_dict(final_weights(two)[1])
    inputs = torch.randint(0, 512, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=inputs).logits, trained(input_ids=inputs).logits)


def test_a_killed_rank_stops_the_job_and_a_rerun_resumes_to_the_same_weights(runs, tmp_path):
    import torch

    cwd = project(tmp_path, "cpu x 2", "fsdp")
    proc = subprocess.Popen([sys.executable, "-m", "genbac", "run", "fsdp.genba", "-o", "out",
                             "--tracking-uri", f"sqlite:///{cwd}/mlflow.db"], cwd=cwd,
                            env=env_for(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    compiled = (cwd / "out").resolve()
    wait_for((compiled / "work/checkpoints/step_00000010").exists, proc, "the checkpoint of step 10")
    pid = worker_pid(compiled, 0)  # rank 0: the one that writes state.json and logs
    assert pid is not None, "no rank 0 worker found"
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    assert f"rank 0 (pid {pid}) was killed by SIGKILL" in stderr, stderr
    state = json.loads((compiled / "work/state.json").read_text())
    assert "phase-1" not in state["done"], "the run finished before it could be killed"
    assert not list((compiled / "work/checkpoints").glob(".*")), "a half-written checkpoint"

    r = genbac_run(cwd, "out")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resuming from work/checkpoints/step_" in r.stdout
    name, resumed = final_weights(cwd)
    ref_name, reference = final_weights(runs["fsdp"][0])
    assert name == ref_name
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    client, by_name = mlflow_runs(cwd)
    steps = [m.step for m in client.get_metric_history(by_name["ddp"].info.run_id, "loss")]
    assert sorted(steps) == list(range(1, STEPS + 1))


@pytest.mark.parametrize("source, hardware, parallelism", [
    ("one", "cpu x 2", "fsdp"),  # a whole model's checkpoint resumed sharded over 2
    ("fsdp", "cpu", None),       # 2 shards resumed by one process, whole
])
def test_a_checkpoint_resumes_at_another_world_size(runs, tmp_path, source, hardware,
                                                    parallelism):
    cwd = project(tmp_path, hardware, parallelism)
    r = subprocess.run([sys.executable, "-m", "genbac", "compile", "fsdp.genba", "-o", "out"],
                       cwd=cwd, capture_output=True, text=True, env=env_for(cwd))
    assert r.returncode == 0, r.stderr
    origin = runs[source][0] / "out/work/checkpoints/step_00000020"
    shutil.copytree(origin, cwd / "out/work/checkpoints/step_00000020")
    r = genbac_run(cwd, "out")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resuming from work/checkpoints/step_00000020 (step 20)" in r.stdout
    _, resumed = final_weights(cwd)
    _, reference = final_weights(runs[source][0])
    diff = max((resumed[k] - reference[k]).abs().max().item() for k in reference)
    assert diff < 1e-6, diff  # 3 more steps, summed in another order than the source's
    state = json.loads(next((cwd / "out/work/checkpoints").glob("step_00000023")).joinpath(
        "state.json").read_text())
    assert state["world_size"] == (2 if parallelism else 1)


def test_torch_compile_of_the_sharded_model_trains_as_one_process_does(runs, tmp_path):
    """`genbac run --compile` on two FSDP processes: inductor compiles the fully_shard-ed model's
    forward (gloo, CPU kernels); measured 1.3e-7 from the uncompiled single process."""
    cwd = project(tmp_path, "cpu x 2", "fsdp")
    r = genbac_run(cwd, "fsdp.genba", "-o", "out", "--compile")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "torch.compile: the training forward pass is compiled" in r.stdout, r.stdout
    name, compiled = final_weights(cwd)
    ref_name, reference = final_weights(runs["one"][0])
    assert name == ref_name
    diff = max((compiled[k] - reference[k]).abs().max().item() for k in reference)
    assert diff < 1e-6, diff  # inductor's fused kernels sum in another order
