"""Several nodes: the compiled SLURM job, run for real with a stand-in `srun` (fake_slurm.py) that
starts each node's command on this machine, and `cpu x N x M` outside SLURM, whose nodes' torchrun
agents all start here; either way the agents meet at a c10d rendezvous over loopback, as on a
cluster. Two nodes must reach the weights of one process, log every step once in MLflow, and
resume after SIGKILL of a rank to the uninterrupted run's exact weights."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_ddp import env_for, final_weights, genbac_run, mlflow_runs, worker_pid
from test_fsdp import STEPS, project
from test_run import wait_for


ROOT = Path(__file__).resolve().parent.parent.parent
FAKE = Path(__file__).resolve().parent / "fake_slurm.py"
GENBA = (ROOT / "examples/llama-genba-10b.genba").read_text()

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def slurm_bin(directory: Path) -> Path:
    """srun, scontrol and genbac on PATH, as on a cluster's node."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, line in (("srun", f'exec {sys.executable} {FAKE} srun "$@"'),
                       ("scontrol", f'exec {sys.executable} {FAKE} scontrol "$@"'),
                       ("genbac", f'exec {sys.executable} -m genbac "$@"')):
        path = directory / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


def slurm_env(cwd: Path, nodes: int = 2, job: str = "4242") -> dict:
    from genbac.runtime.distributed import free_port

    return {**env_for(cwd), "PATH": f"{slurm_bin(cwd / 'bin')}:{os.environ['PATH']}",
            "SLURM_JOB_ID": job, "SLURM_NNODES": str(nodes),
            "SLURM_JOB_NODELIST": ",".join(["localhost"] * nodes),
            "SLURM_SUBMIT_DIR": str(cwd / "out"), "GENBAC_RDZV_PORT": str(free_port()),
            "FAKE_SLURM_LOG": str(cwd / "srun.jsonl")}


def sbatch(cwd: Path, **popen) -> subprocess.Popen:
    """What sbatch does on the job's first node: run (a copy of) slurm.sh there."""
    spool = cwd / "spool"
    spool.mkdir(exist_ok=True)
    shutil.copy(cwd / "out/slurm.sh", spool / "slurm_script")
    return subprocess.Popen(["bash", str(spool / "slurm_script"), "--tracking-uri",
                             f"sqlite:///{cwd}/mlflow.db"], cwd=spool, env=slurm_env(cwd),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def compile_here(cwd: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "genbac", "compile", "fsdp.genba", "-o", "out"],
                       cwd=cwd, capture_output=True, text=True, env=env_for(cwd))
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    cwd = project(tmp_path_factory.mktemp("one"), "cpu", None)
    r = genbac_run(cwd, "fsdp.genba", "-o", "out")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return cwd


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The tiny experiment on `cpu x 1 x 2` with FSDP over both nodes, as a SLURM job."""
    cwd = project(tmp_path_factory.mktemp("job"), "cpu x 1 x 2", "fsdp")
    compile_here(cwd)
    proc = sbatch(cwd)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return cwd, stdout


def assert_close_to(cwd: Path, reference: Path, limit: float = 1e-6) -> None:
    name, w = final_weights(cwd)
    ref_name, ref = final_weights(reference)
    assert name == ref_name == f"step_{STEPS:08d}" and w.keys() == ref.keys()
    diff = max((w[k] - ref[k]).abs().max().item() for k in ref)
    assert diff < limit, diff


def assert_every_step_once(cwd: Path) -> None:
    client, by_name = mlflow_runs(cwd)
    assert by_name["phase-1"].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(by_name["ddp"].info.run_id, "loss")]
    assert sorted(steps) == list(range(1, STEPS + 1))


def test_the_slurm_job_trains_on_two_nodes_like_one_process(job, one):
    cwd, stdout = job
    assert "genbac: SLURM job 4242 on localhost,localhost (2 nodes)" in stdout
    assert "2 processes, FSDP (gloo), on 2 nodes through srun (torchrun agents, c10d rendezvous " \
           "at localhost:" in stdout
    calls = [json.loads(line) for line in (cwd / "srun.jsonl").read_text().splitlines()]
    # preflight: every node reads a file written in the compiled directory; then phase 1
    assert [c["argv"][0] for c in calls] == ["cat", sys.executable]
    (phase,) = [c for c in calls if c["argv"][0] == sys.executable]
    argv = phase["argv"]
    assert phase["nodes"] == 2
    assert argv[:argv.index("-m", 3)] == [
        sys.executable, "-m", "genbac.runtime.distributed", "--nnodes", "2",
        "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
        f"localhost:{argv[argv.index('--rdzv-endpoint') + 1].split(':')[1]}", "--rdzv-id",
        argv[argv.index("--rdzv-id") + 1], "--max-restarts", "0"]
    assert argv[argv.index("--rdzv-id") + 1].startswith("genbac-4242-phase1-")
    assert argv[argv.index("-m", 3) + 1:][:2] == ["genbac.runtime.worker", str(cwd / "out")]
    assert_close_to(cwd, one)
    assert_every_step_once(cwd)


def test_a_killed_rank_fails_the_job_and_the_resubmitted_job_resumes(job, tmp_path):
    import torch

    cwd = project(tmp_path, "cpu x 1 x 2", "fsdp")
    compile_here(cwd)
    proc = sbatch(cwd)
    compiled = (cwd / "out").resolve()
    wait_for((compiled / "work/checkpoints/step_00000010").exists, proc,
             "the checkpoint of step 10")
    pid = worker_pid(compiled, 1)
    assert pid is not None, "no rank 1 worker found"
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stdout[-2000:] + stderr[-3000:]
    assert "Traceback" not in stderr
    assert f"rank 1 (pid {pid}) was killed by SIGKILL" in stderr, stderr[-3000:]
    assert "phase-1" not in json.loads((compiled / "work/state.json").read_text())["done"]

    proc = sbatch(cwd)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "resuming from work/checkpoints/step_" in stdout
    name, resumed = final_weights(cwd)
    ref_name, reference = final_weights(job[0])
    assert name == ref_name
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    assert_every_step_once(cwd)


def test_hsdp_over_two_nodes_rehearsed_here_trains_like_one_process(one, tmp_path):
    """`cpu x 2 x 2` outside SLURM: both nodes' torchrun agents start on this machine; HSDP shards
    inside each node's 2 processes and replicates across the 2 nodes."""
    cwd = project(tmp_path, "cpu x 2 x 2", "hsdp")
    r = genbac_run(cwd, "fsdp.genba", "-o", "out")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "4 processes, HSDP (gloo), on 2 nodes rehearsed here (torchrun agents, c10d " \
           "rendezvous at 127.0.0.1:" in r.stdout
    assert_close_to(cwd, one)
    assert_every_step_once(cwd)
    state = json.loads(next((cwd / "out/work/checkpoints").glob(f"step_{STEPS:08d}")).joinpath(
        "state.json").read_text())
    assert (state["world_size"], state["parallelism"]) == (4, "hsdp")


def test_the_genba_slurm_job_is_byte_stable_shellcheck_clean_and_says_its_launch(tmp_path):
    from genbac.compiler.compile import compile_spec

    text = GENBA.replace("hardware = cs-2 x 1", "hardware = h100 x 8 x 4").replace(
        "    micro_batch      = 20\n", "")
    outputs = []
    for name in ("a", "b"):
        files = compile_spec(text, "llama-genba-10b.genba", project_dir="..")[1]
        outputs.append(files["slurm.sh"])
        (tmp_path / name).write_bytes(files["slurm.sh"])
    assert outputs[0] == outputs[1]
    script = (tmp_path / "a")
    subprocess.run(["bash", "-n", str(script)], check=True)
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    lines = outputs[0].decode().splitlines()
    assert [line for line in lines if line.startswith("#SBATCH")] == [
        "#SBATCH --job-name=llama-genba-10b", "#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8", "#SBATCH --exclusive", "#SBATCH --output=slurm-%j.out"]
    body = outputs[0].decode()
    assert "--nnodes 4 --nproc-per-node 8" in body and "HSDP over 32 h100 GPUs" in body
    assert lines[-1] == 'exec "$GENBAC" run . "$@"'
    # a CS-2 experiment has no SLURM job (its cluster manager is Cerebras'), nor a one-process CPU
    assert "slurm.sh" not in compile_spec(GENBA, "llama-genba-10b.genba", project_dir="..")[1]


def test_several_nodes_outside_a_job_or_in_too_small_a_one_are_refused(tmp_path):
    from genbac.compiler.artifact import Artifact
    from genbac.runtime.preflight import preflight

    text = GENBA.replace("hardware = cs-2 x 1", "hardware = h100 x 8 x 4").replace(
        "    micro_batch      = 20\n", "")
    cwd = tmp_path
    shutil.copytree(ROOT / "examples/data", cwd / "data")
    (cwd / "exp.genba").write_text(text)
    r = subprocess.run([sys.executable, "-m", "genbac", "compile", "exp.genba", "-o", "out"],
                       cwd=cwd, capture_output=True, text=True, env=env_for(cwd))
    assert r.returncode == 0, r.stderr
    artifact = Artifact.load(cwd / "out")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("SLURM_")]:
            mp.delenv(key)
        verdict = preflight(artifact)
        assert any("runs on 4 nodes: submit the compiled SLURM job (`cd " in p and
                   "sbatch slurm.sh`)" in p for p in verdict.problems), verdict.problems
        mp.setenv("SLURM_JOB_ID", "7")
        mp.setenv("SLURM_NNODES", "2")
        verdict = preflight(artifact)
        assert any("runs on 4 nodes; SLURM job 7 has 2 (sbatch --nodes=4" in p
                   for p in verdict.problems), verdict.problems


def test_a_work_directory_the_other_nodes_do_not_see_is_refused_before_anything_runs(tmp_path):
    """Inside a two-node job whose compiled directory is on the first node's own disk, preflight
    finds that the second node cannot read a file written there, and `genbac run` stops in one
    line, before a step, a process group or an MLflow run."""
    cwd = project(tmp_path, "cpu x 1 x 2", "fsdp")
    compile_here(cwd)
    before = sorted(p.relative_to(cwd) for p in (cwd / "out").rglob("*"))
    env = {**slurm_env(cwd), "FAKE_SLURM_NODE_LOCAL": str(cwd / "out")}
    r = subprocess.run([sys.executable, "-m", "genbac", "run", "out", "--tracking-uri",
                        f"sqlite:///{cwd}/mlflow.db"], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "genbac: error: cannot start:" in r.stderr, r.stderr
    assert (f"{(cwd / 'out').resolve()} is not on a filesystem all 2 nodes share (1 of them read "
            "a file written there)") in r.stderr, r.stderr
    assert not (cwd / "mlflow.db").exists()
    assert sorted(p.relative_to(cwd) for p in (cwd / "out").rglob("*")) == before  # no probe left
    srun_calls = [json.loads(line) for line in (cwd / "srun.jsonl").read_text().splitlines()]
    assert [call["argv"][0] for call in srun_calls] == ["cat"]  # the check, and nothing started

    # a SLURM job's variables on a machine without srun: the check says why it cannot be made
    env["PATH"] = os.path.dirname(sys.executable) + ":/usr/bin:/bin"
    r = subprocess.run([sys.executable, "-m", "genbac", "run", "out", "--dry-run"], cwd=cwd,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert (f"cannot check that all 2 nodes see {(cwd / 'out').resolve()}: srun is not on PATH "
            "(SLURM job 4242 is set: run on a node of it)") in r.stdout, r.stdout


def test_the_documented_two_node_rehearsal_runs_and_its_sharded_baseline_matches_the_base(
        tmp_path):
    """README's command for two nodes on one machine: `genbac run
    examples/composition/tiny-rehearsal-two-nodes.genba`. Its step-0 baseline evaluates the base
    before growth sharded like the trained model, on both ranks; identity growth keeps the loss."""
    from mlflow.tracking import MlflowClient

    shutil.copytree(ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("models", "*.gguf"))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)  # the project's root
    spec = "examples/composition/tiny-rehearsal-two-nodes.genba"
    r = subprocess.run([sys.executable, "-m", "genbac", "run", spec, "-o", "out",
                        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, env=env_for(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 processes, FSDP (gloo), on 2 nodes rehearsed here" in r.stdout
    assert "growth preserved the function" in r.stdout, r.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (exp,) = [e for e in client.search_experiments() if e.name == "tiny-rehearsal-two-nodes"]
    (parent,) = [x for x in client.search_runs([exp.experiment_id])
                 if "mlflow.parentRunId" not in x.data.tags]
    for code in ("en", "de", "bar"):
        (grown,) = [m.value for m in client.get_metric_history(parent.info.run_id,
                                                               f"val_loss/{code}") if m.step == 0]
        (base,) = client.get_metric_history(parent.info.run_id, f"base_val_loss/{code}")
        assert base.step == 0 and base.value == pytest.approx(grown, rel=1e-5)
