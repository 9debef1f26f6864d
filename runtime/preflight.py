"""Preflight: everything `genbac run` (and run.sh, through `genbac preflight`) checks before the
first step, before the lock, the state file or any MLflow record: a refusal changes nothing.

    backend   chosen from the spec's hardware: CS-X -> cszoo; h100/a100 x N -> local on N CUDA
              devices; cpu -> local. `--backend local` on a CS-X or GPU spec without those devices
              is a rehearsal on what is here, said so and recorded (the device actually used).
    inputs    every step's inputs from the project: source patterns match files, tokenizer and
              weights directories hold what is read from them; what comes from the Hugging Face
              Hub is in the cache or the Hub answers for it (one line when not: no network,
              no such repository or revision, a gated one without HF_TOKEN).
    disk      the planned data, checkpoints and weights against the free space, and an `hf:`
              download against its cache's (an estimate; the Hub says the files' sizes).
    memory    the model's training memory at the micro-batch against the device's.

Pure apart from looking at this machine (devices, files, free space), so `--dry-run` shows it too.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from genbac.compiler import artifact as layout
from genbac.compiler.artifact import Artifact, Input, Step
from genbac.compiler.plan import BYTES_PER_TRAINABLE, KEEP_CHECKPOINTS
from genbac.errors import RefusedError
from genbac.units import size_text

GIB = 1024 ** 3
HDF5_BYTES_PER_TOKEN = 12  # Model Zoo's GPT HDF5: input_ids, attention_mask, labels as int32
LOCAL_BYTES_PER_TOKEN = 4  # genbac's packed int32 rows
BYTES_PER_SOURCE_TOKEN = 3  # source bytes per token: a deliberately low guess (more tokens)
CHECKPOINT_BYTES_PER_PARAMETER = 12  # fp32 weights + two fp32 Adam moments
MEMORY_HEADROOM = 0.9  # of a device's memory that training may plan to use


@dataclass(frozen=True)
class Device:
    """Where the phases train."""

    backend: str  # "local" or "cszoo"
    kind: str  # "cpu", "cuda" or "csx"
    count: int  # processes (local) or systems/devices
    description: str  # e.g. "cuda x 4 (NVIDIA H100 80GB HBM3)", recorded in MLflow
    memory_bytes: int | None  # per device, for the memory check; None: not checked (CS-X)
    rehearsal: str | None = None  # why this is not the declared hardware; None when it is
    nodes: int = 1  # `count` processes in all, over this many nodes


@dataclass
class Verdict:
    device: Device | None
    problems: list[str] = field(default_factory=list)
    estimates: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = []
        if self.device is not None:
            out.append(f"device: {self.device.description} ({self.device.backend} backend)")
            if self.device.rehearsal:
                out.append(f"REHEARSAL: {self.device.rehearsal}")
        out += [f"estimate: {e}" for e in self.estimates]
        out += [f"refused: {p}" for p in self.problems]
        out.append("preflight: ok" if self.ok else
                   f"preflight: {len(self.problems)} problem(s); nothing was started")
        return out

    def raise_if_refused(self) -> None:
        if self.problems:
            raise RefusedError("cannot start:\n" + "\n".join(f"  - {p}" for p in self.problems))


# ------------------------------------------------------------------------------------------------
# this machine
# ------------------------------------------------------------------------------------------------

def cuda_devices() -> list[tuple[str, int]]:
    """(name, total memory) of each CUDA device torch sees here; [] without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [(torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory)
            for i in range(torch.cuda.device_count())]


def memory_available() -> int:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping), else total RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def free_bytes(path: Path) -> int:
    """Free space for an unprivileged writer on the filesystem `path` is (or would be) on."""
    return shutil.disk_usage(_existing(path)).free


def same_filesystem(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are (or would be) on one filesystem."""
    return os.stat(_existing(a)).st_dev == os.stat(_existing(b)).st_dev


def _existing(path: Path) -> Path:
    """`path`, or the nearest of its parents that exists."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def cpu_description() -> str:
    return f"cpu ({os.cpu_count()} cores, {memory_available() / GIB:.1f} GiB available)"


FREE_MEMORY = re.compile(r", [\d.]+ GiB available")  # cpu_description's part of the moment


def steady_description(description: str) -> str:
    """A device description without the memory free when it was taken, which differs from run to
    run on one machine: what `genbac compare` sets side by side."""
    return FREE_MEMORY.sub("", description)


# ------------------------------------------------------------------------------------------------
# the backend and the device
# ------------------------------------------------------------------------------------------------

def resolve_backend(requested: str, hardware) -> str:
    """"auto" is the spec's hardware: CS-X trains under cszoo, GPUs and cpu under local."""
    if requested != "auto":
        return requested
    return "cszoo" if hardware.is_csx else "local"


def choose_device(artifact: Artifact, requested: str, problems: list[str]) -> Device | None:
    """The backend and device for `requested` ("auto", "local" or "cszoo"); a problem appended
    (and None) where the spec's hardware is not here."""
    hw = artifact.plan.spec.hardware
    declared = hw.describe()
    backend = resolve_backend(requested, hw)
    if backend == "cszoo":
        from .cszoo_backend import MISSING, find_cszoo_or_none

        if find_cszoo_or_none() is None:
            problems.append(MISSING.format(where="it is not on PATH (nor $GENBAC_CSZOO)")
                            if not hw.is_csx else
                            f"hardware = {declared} trains through Cerebras Model Zoo's `cszoo`, "
                            "which is not installed here (not on PATH, nor $GENBAC_CSZOO). Run "
                            "this on a Cerebras user node, or rehearse it here with --backend "
                            "local")
            return None
        if hw.is_csx:
            return Device("cszoo", "csx", hw.count, f"{declared} (Model Zoo CSX backend)", None)
        if hw.is_gpu:
            gpus = cuda_devices()
            if len(gpus) < hw.count:
                problems.append(f"hardware = {declared} needs {hw.count} CUDA device(s) for "
                                f"Model Zoo's GPU backend; this machine has {len(gpus)}")
                return None
            return Device("cszoo", "cuda", hw.count,
                          f"cuda x {hw.count} ({gpus[0][0]}, Model Zoo GPU backend)", gpus[0][1])
        return Device("cszoo", "cpu", 1, f"{cpu_description()}, Model Zoo CPU backend",
                      memory_available())

    gpus = cuda_devices()
    nodes = hw.nodes or 1
    if nodes > 1 and not node_problem(artifact, nodes, problems):
        return None
    if hw.kind == "cpu":
        each = f"{hw.count} process{'es' if hw.count > 1 else ''}"
        where = (f", {each} on each of {nodes} nodes" if nodes > 1 else
                 f", {hw.count} processes" if hw.count > 1 else "")
        return Device("local", "cpu", hw.devices, cpu_description() + where, memory_available(),
                      nodes=nodes)
    if hw.is_gpu and len(gpus) >= hw.count:
        what = f"cuda x {hw.count}" + (f" on each of {nodes} nodes" if nodes > 1 else "")
        return Device("local", "cuda", hw.devices, f"{what} ({gpus[0][0]})", gpus[0][1],
                      nodes=nodes)
    here = f"cuda x 1 ({gpus[0][0]})" if gpus else cpu_description()
    if requested == "auto":  # only GPU kinds get here: CS-X chose cszoo above
        problems.append(f"hardware = {declared} needs {hw.count} CUDA device(s); this machine "
                        f"has {len(gpus)}. Run it where they are, or rehearse it here on "
                        f"{'the GPU' if gpus else 'the CPU'} with --backend local (a labelled "
                        "rehearsal, recorded as such in MLflow)")
        return None
    why = (f"the spec declares hardware = {declared}; this run trains on {here}, one process "
           "(an explicit --backend local rehearsal)")
    if gpus:
        return Device("local", "cuda", 1, here, gpus[0][1], rehearsal=why)
    return Device("local", "cpu", 1, here, memory_available(), rehearsal=why)


def node_problem(artifact: Artifact, nodes: int, problems: list[str]) -> bool:
    """Whether `nodes` nodes can start from here: inside a SLURM job of as many nodes whose nodes
    all see the compiled directory (the executor, the ranks' events and the checkpoints share
    it), or, for CPU processes outside SLURM, every node's processes on this machine. Appends
    the problem and returns False where not."""
    hw = artifact.plan.spec.hardware
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        if hw.kind == "cpu":
            return True  # a rehearsal of the layout here (runtime/distributed.py, "local")
        problems.append(f"hardware = {hw.describe()} runs on {nodes} nodes: submit the compiled "
                        f"SLURM job (`cd {artifact.directory} && sbatch {layout.SLURM_SH}`), "
                        "which runs `genbac run` on its first node and each phase on every "
                        "node through srun")
        return False
    have = int(os.environ.get("SLURM_NNODES", os.environ.get("SLURM_JOB_NUM_NODES", "1")))
    if have < nodes:
        problems.append(f"hardware = {hw.describe()} runs on {nodes} nodes; SLURM job {job} has "
                        f"{have} (sbatch --nodes={nodes}, as {layout.SLURM_SH} asks)")
        return False
    problem = shared_directory_problem(artifact.directory, nodes)
    if problem:
        problems.append(problem)
        return False
    return True


def shared_directory_problem(directory: Path, nodes: int) -> str | None:
    """Whether every node of the job reads a file written here in `directory` (a shared
    filesystem): srun runs `cat` of a fresh token file on each node."""
    import secrets
    import subprocess

    token = secrets.token_hex(8)
    probe = directory / f".genbac-shared-{token}"
    try:
        probe.write_text(token + "\n")
        try:
            out = subprocess.run(["srun", f"--nodes={nodes}", "--ntasks-per-node=1",
                                  "--kill-on-bad-exit=1", "cat", str(probe)],
                                 capture_output=True, text=True, timeout=300)
        except FileNotFoundError:
            return (f"cannot check that all {nodes} nodes see {directory}: srun is not on PATH "
                    f"(SLURM job {os.environ.get('SLURM_JOB_ID')} is set: run on a node of it)")
        except (OSError, subprocess.SubprocessError) as exc:
            return f"cannot run srun to check the nodes see {directory}: {exc}"
    finally:
        probe.unlink(missing_ok=True)
    seen = out.stdout.split().count(token)
    if out.returncode != 0 and not seen:
        said = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        return f"cannot check that all {nodes} nodes see {directory}: srun failed: {said}"
    if seen != nodes:
        return (f"{directory} is not on a filesystem all {nodes} nodes share ({seen} of them read "
                "a file written there): the executor, the ranks and the checkpoints need one "
                "shared work directory; compile into a shared directory (e.g. on the cluster's "
                "parallel filesystem) and submit from there")
    return None


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------

def input_problem(artifact: Artifact, item: Input, engine: str, backend: str) -> str | None:
    """What is wrong with a step's input, or None."""
    if item.root == "compiled":
        return None  # an earlier step's output
    if item.root == "hub":  # a download step's: in the cache, or the Hub answers for it
        from .hub import check, ref_of

        return check(ref_of(item.path), item.holds)
    path = artifact.project_path(item.path)
    if item.holds == "files":
        from .sources import DataError, resolve_sources

        try:
            resolve_sources([item.path], artifact.project)
        except DataError as exc:
            return str(exc)
        return None
    if not path.is_dir():
        return (f"no {item.holds} directory {path} (the spec's "
                f"{item.path!r}, under {artifact.project})")
    if item.holds == "tokenizer" and not (path / "tokenizer.json").is_file():
        return f"{path} has no tokenizer.json (save a fast tokenizer there)"
    if item.holds == "weights":
        missing = [name for name in ("config.json",) if not (path / name).is_file()]
        if not any((path / n).is_file() for n in ("model.safetensors",
                                                   "model.safetensors.index.json")):
            missing.append("model.safetensors (or model.safetensors.index.json)")
        if missing:
            return (f"{path} is not a Hugging Face checkpoint: it has no "
                    f"{' and no '.join(missing)}")
    return None


# ------------------------------------------------------------------------------------------------
# estimates
# ------------------------------------------------------------------------------------------------

def weight_bytes_per_parameter(artifact: Artifact) -> int:
    """The grown copy keeps the base's dtype: 2 bytes for a 16-bit checkpoint, else 4."""
    weights = artifact.plan.base_weights
    if weights and not weights.startswith("hf:"):
        import json

        try:
            config = json.loads((artifact.project_path(weights) / "config.json").read_text())
        except (OSError, ValueError):
            return 4
        dtype = config.get("torch_dtype") or config.get("dtype")
        return 2 if dtype in ("bfloat16", "float16") else 4
    return 4


def source_bytes(artifact: Artifact, step: Step) -> int:
    from .sources import DataError, resolve_sources

    patterns = [i.path for i in step.inputs if i.root == "project" and i.holds == "files"]
    try:
        return sum(p.stat().st_size for p in resolve_sources(patterns, artifact.project)
                   if p.is_file())
    except (DataError, OSError):
        return 0


def disk_needed(artifact: Artifact, backend: str, done: set[str]) -> tuple[int, list[str]]:
    """Bytes the remaining steps write, with the parts named."""
    plan = artifact.plan
    params = plan.growth.parameters
    per_token = HDF5_BYTES_PER_TOKEN if backend == "cszoo" else LOCAL_BYTES_PER_TOKEN
    parts: dict[str, int] = {}
    for step in artifact.steps.steps:
        if step.name in done:
            continue
        if step.kind == "stage":
            parts["data"] = parts.get("data", 0) + per_token * source_bytes(
                artifact, step) // BYTES_PER_SOURCE_TOKEN
        elif step.kind == "base":
            base_params = plan.growth.base_parameters
            parts["random base"] = 4 * base_params
        elif step.kind == "grow":
            parts["grown weights"] = weight_bytes_per_parameter(artifact) * params
        elif step.kind == "convert" and backend == "cszoo":
            parts["converted weights"] = 4 * params
    if any(s.kind == "phase" and s.name not in done for s in artifact.steps.steps):
        train = plan.spec.train
        if backend == "cszoo":
            saves = sum(-(-p.steps // plan.checkpoint_every) for p in plan.schedule.phases)
            kept = min(saves, train.keep_checkpoints or saves)
        else:
            kept = train.keep_checkpoints or KEEP_CHECKPOINTS
        parts[f"checkpoints ({kept} kept)"] = kept * CHECKPOINT_BYTES_PER_PARAMETER * params
    return sum(parts.values()), [f"{k} {size_text(v)}" for k, v in parts.items() if v]


def hub_download(artifact: Artifact, done: set[str]) -> tuple[int, Path | None]:
    """Bytes the remaining download steps fetch into the Hugging Face cache, and the cache's
    directory (None when nothing is fetched). Each file counted once, the cached ones not."""
    items = [item for step in artifact.steps.steps if step.name not in done
             for item in step.inputs if item.root == "hub"]
    if not items:
        return 0, None
    from huggingface_hub import constants

    from .hub import ref_of, to_download

    files: dict[tuple[str, str], int] = {}
    for item in items:
        files.update(to_download(ref_of(item.path), item.holds))
    return sum(files.values()), Path(constants.HF_HUB_CACHE)


def training_memory(artifact: Artifact, device: Device) -> tuple[int, int, int]:
    """Bytes one device holds while training, as (states, activations, micro-batch): parameters,
    gradients and optimizer state (fp32 master weights, two moments), and activations at the
    micro-batch (the trainer's rule: the spec's, else the batch split over the processes), kept
    for the backward pass: per layer about s·b·h·(34 + 5·a·s/h) bytes at 16 bits (Korthikanti et
    al. 2022, no recomputation), twice that in fp32, plus the logits and their gradient in fp32."""
    plan = artifact.plan
    arch, growth, train = plan.architecture, plan.growth, plan.spec.train
    planned = plan.parallelism
    if planned is not None and planned.devices == device.count and device.kind == "cuda":
        m = planned.memory  # the planner's estimate for this strategy (compiler/parallelism.py)
        return m.state + m.gathered, m.activations + m.logits, planned.micro_batch
    states = growth.state_bytes
    if train.parallelism in ("fsdp", "hsdp"):  # `cpu x N`: each process holds its shard
        states = -(-states // max(1, device.count))
    seq = plan.schedule.sequence
    per_rank = max(1, plan.schedule.batch // max(1, device.count))
    micro = min(train.micro_batch or per_rank, per_rank)
    width = 2 if train.precision in ("bf16", "fp16") else 4
    per_layer = seq * micro * arch.hidden * (34 + 5 * arch.heads * seq / arch.hidden) * width / 2
    logits = 3 * micro * seq * growth.vocab * 4
    return int(states), int(growth.layers * per_layer + logits), micro


# ------------------------------------------------------------------------------------------------
# the whole check
# ------------------------------------------------------------------------------------------------

def preflight(artifact: Artifact, requested: str = "auto", done: set[str] | None = None
              ) -> Verdict:
    problems: list[str] = []
    device = choose_device(artifact, requested, problems)
    verdict = Verdict(device, problems)
    backend = device.backend if device else resolve_backend(requested,
                                                            artifact.plan.spec.hardware)
    done = done or set()
    found: dict[str, list[str]] = {}  # problem -> the steps it stops, in order
    for step in artifact.steps.steps:
        if step.name in done:
            continue
        for item in step.inputs:
            problem = input_problem(artifact, item, step.engine, backend)
            if problem and step.name not in found.setdefault(problem, []):
                found[problem].append(step.name)
    problems += [f"{', '.join(steps)}: {problem}" for problem, steps in found.items()]
    if backend == "local" and any(s.kind == "prepare" and s.name not in done
                                  for s in artifact.steps.steps):
        from .data import DataError, data_processes
        try:
            data_processes(0)  # $GENBAC_DATA_PROCESSES, if set, must be a count
        except DataError as error:
            problems.append(str(error))

    needed, parts = disk_needed(artifact, backend, done)
    work = artifact.path(layout.WORK)
    free = free_bytes(work)
    fetch, cache = hub_download(artifact, done)
    if fetch and same_filesystem(cache, work):  # one disk holds both: count them together
        needed, parts, fetch = needed + fetch, [*parts, f"Hub download {size_text(fetch)}"], 0
    verdict.estimates.append(f"disk {size_text(needed)} ({', '.join(parts) or 'nothing'}) of "
                             f"{size_text(free)} free at {work}")
    if needed > free:
        problems.append(f"not enough disk: the remaining steps write about {size_text(needed)} "
                        f"({', '.join(parts)}), and {work} has {size_text(free)} free")
    if fetch:
        cache_free = free_bytes(cache)
        verdict.estimates.append(f"Hub download {size_text(fetch)} of {size_text(cache_free)} "
                                 f"free in the Hugging Face cache {cache}")
        if fetch > cache_free:
            problems.append(f"not enough disk for the Hub download: about {size_text(fetch)} "
                            f"into the Hugging Face cache {cache}, which has "
                            f"{size_text(cache_free)} free (point HF_HOME or HF_HUB_CACHE at a "
                            "larger disk)")

    if device is not None and device.memory_bytes is not None:
        states, activations, micro = training_memory(artifact, device)
        # CPU processes share a machine's RAM: one node's, or all of them in a rehearsal here
        here = device.nodes == 1 or not os.environ.get("SLURM_JOB_ID")
        processes = (device.count if here else device.count // device.nodes) \
            if device.kind == "cpu" else 1
        need = (states + activations) * processes
        have = int(device.memory_bytes * MEMORY_HEADROOM)
        growth = artifact.plan.growth
        where = "machine" if device.kind == "cpu" else "device"
        verdict.estimates.append(f"training memory {size_text(need)} per {where} of "
                                 f"{size_text(device.memory_bytes)}")
        if need > have:
            problems.append(
                f"the model cannot train on {device.description}: "
                f"{growth.parameters / 1e9:.2f}B parameters "
                f"({growth.trainable_parameters / 1e9:.2f}B trainable) need about "
                f"{size_text(need)}{f' ({processes} processes)' if processes > 1 else ''}: "
                f"{size_text(states)} of weights, gradients and AdamW state "
                f"({BYTES_PER_TRAINABLE} bytes per trainable parameter) and {size_text(activations)}"
                f" of activations at a micro-batch of {micro}; {size_text(have)} are usable here "
                f"({MEMORY_HEADROOM:.0%} of {size_text(device.memory_bytes)})")
    return verdict
