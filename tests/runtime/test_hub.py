"""`hf:` base weights downloaded at run time: the real `huggingface_hub` client (through a real
`genbac run`) against a Hub on 127.0.0.1 (fake_hub.py, HF_ENDPOINT) serving a tiny Llama and its
tokenizer. Only what training reads is fetched, into the user's cache; the commit a branch resolved
to is recorded in MLflow; a connection dropped mid-file resumes with a Range request; a gated one takes
HF_TOKEN and the token is never shown; a missing revision, a gated repository without a token and
an unreachable Hub are each one line in preflight before anything starts; HF_HUB_OFFLINE=1 trains
from the cache alone."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_hub import FakeHub, Repo
from test_ddp import env_for

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "hf_fakeTokenThatMustNeverBePrinted0123"
SPEC = """
experiment "hub" {{
  architecture tiny {{ hidden = 64  layers = 2  heads = 4  kv_heads = 2  ffn = 128  vocab = 40960
                      context = 64 }}
  base = tiny from "{weights}"
  grow blocks {{ add = 1  init = identity }}
  language en {{ data = "data/en/train.jsonl"  tokens = ~3K }}
  train {{
    tokens    = 3K
    sequence  = 32
    batch     = 8
    optimizer = adamw(lr = 1e-3)
    checkpoint every 100 steps
    seed = 3
  }}
  hardware = cpu
}}
"""

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny Llama with its tokenizer, saved as a released model is, plus files a model
    repository often also holds that training does not read. Its vocabulary (40,960 rows, the
    tokenizer uses 512) makes model.safetensors 21 MB: above huggingface_hub's 10 MiB download
    chunk, so that a connection dropped halfway leaves a chunk written to resume from."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from genbac.runtime.tokenizer import train_bpe_tokenizer

    out = tmp_path_factory.mktemp("tiny-model")
    train_bpe_tokenizer([ROOT / "examples/data/en/train.jsonl"], 512, out / "tok")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=40960, hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, max_position_embeddings=64)
                     ).save_pretrained(out / "model")
    for name in os.listdir(out / "tok"):
        shutil.copy(out / "tok" / name, out / "model" / name)
    (out / "model/original").mkdir()
    (out / "model/original/consolidated.00.pth").write_bytes(b"\0" * 4096)
    (out / "model/pytorch_model.bin").write_bytes(b"\0" * 4096)
    (out / "model/README.md").write_text("# tiny\n")
    return out / "model"


def project(tmp_path: Path, weights: str) -> Path:
    shutil.copytree(ROOT / "examples/data/en", tmp_path / "data/en")
    (tmp_path / "hub.genba").write_text(SPEC.format(weights=weights))
    return tmp_path


def run(cwd: Path, endpoint: str, **env) -> subprocess.CompletedProcess:
    environment = {**env_for(cwd), "HF_ENDPOINT": endpoint, "HF_HOME": str(cwd.parent / "hf-home"),
                   **env}
    environment.pop("HF_HUB_OFFLINE")
    if env.get("HF_HUB_OFFLINE"):
        environment["HF_HUB_OFFLINE"] = env["HF_HUB_OFFLINE"]
    return subprocess.run([sys.executable, "-m", "genbac", "run", "hub.genba", "-o", "out",
                           "--tracking-uri", f"sqlite:///{cwd}/mlflow.db"], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=environment)


def test_hf_weights_download_into_the_cache_resume_and_train(model_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    repo = Repo.from_directory(model_dir, token=TOKEN)
    cwd = project(tmp_path / "p", "hf:genbac-test/tiny")
    with FakeHub({"genbac-test/tiny": repo}) as hub:
        hub.interrupt = {"model.safetensors"}
        r = run(cwd, hub.url, HF_TOKEN=TOKEN)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"hf:genbac-test/tiny is commit {repo.commit}" in r.stdout
    # the link in the compiled directory points into the user's cache, at the resolved commit
    link = cwd / "out/work/hub/base"
    snapshot = (tmp_path / "hf-home/hub/models--genbac-test--tiny/snapshots" / repo.commit)
    assert link.is_symlink() and link.resolve() == snapshot.resolve()
    assert sorted(os.listdir(snapshot)) == sorted(
        n for n in repo.files if "/" not in n and n not in ("pytorch_model.bin", "README.md"))
    got = (snapshot / "model.safetensors").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(repo.files["model.safetensors"]).digest()
    gets = [q for q in hub.requests if q["method"] == "GET" and q["path"].endswith(
        "/resolve/" + repo.commit + "/model.safetensors")]
    # the first GET was cut off halfway; the client asked for the rest, and only the rest
    size = len(repo.files["model.safetensors"])
    assert size > 20 * 2**20 and [q["range"] for q in gets][0] is None
    assert [q["range"] for q in gets][1:] == [f"bytes={10 * 2**20}-"], gets  # one 10 MiB chunk
    assert not list((tmp_path / "hf-home").rglob("*.incomplete"))
    assert not [q for q in hub.requests if "original/" in q["path"] or q["path"].endswith(".bin")]
    assert all(q["token"] == TOKEN for q in hub.requests)  # HF_TOKEN was sent ...
    for text in (r.stdout, r.stderr, *(p.read_text(errors="replace")
                                       for p in (cwd / "out/work").rglob("*.log"))):
        assert TOKEN not in text  # ... and never shown
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd}/mlflow.db")
    (exp,) = [e for e in client.search_experiments() if e.name == "hub"]
    runs = {x.info.run_name: x for x in client.search_runs([exp.experiment_id])}
    params = runs["download-base"].data.params
    assert (params["repository"], params["revision"], params["commit"]) == (
        "genbac-test/tiny", "main (unpinned)", repo.commit)
    assert TOKEN not in repr(params)
    assert runs["phase-1"].info.status == "FINISHED"

    # offline, from the cache alone (the Hub is gone): another experiment on the same base
    other = project(tmp_path / "q", "hf:genbac-test/tiny")
    r = run(other, "http://127.0.0.1:9", HF_HUB_OFFLINE="1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.parametrize("weights, token, expected", [
    ("hf:genbac-test/tiny@no-such-branch", TOKEN,
     "the repository genbac-test/tiny has no revision `no-such-branch` on http://127.0.0.1:"),
    ("hf:genbac-test/tiny", None, "genbac-test/tiny is gated: accept its conditions"),
    ("hf:genbac-test/missing", TOKEN, "no repository genbac-test/missing on http://127.0.0.1:"),
])
def test_what_cannot_be_downloaded_is_one_line_in_preflight(model_dir, tmp_path, weights, token,
                                                            expected):
    cwd = project(tmp_path, weights)
    with FakeHub({"genbac-test/tiny": Repo.from_directory(model_dir, token=TOKEN)}) as hub:
        r = run(cwd, hub.url, **({"HF_TOKEN": token} if token else {}))
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if expected in line]
    assert len(lines) == 1 and lines[0].startswith(f"  - download-base: {weights} cannot be "
                                                   "downloaded: "), r.stderr
    assert "Traceback" not in r.stderr and TOKEN not in r.stderr + r.stdout
    assert not (cwd / "out/work/state.json").exists()  # refused before anything started


def test_an_unreachable_hub_is_one_line_in_preflight(tmp_path):
    from genbac.runtime.distributed import free_port

    cwd = project(tmp_path, "hf:genbac-test/tiny@main")
    r = run(cwd, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    (line,) = [x for x in r.stderr.splitlines() if "hf:genbac-test/tiny@main" in x]
    assert "is not reachable from here" in line and "Traceback" not in r.stderr


@pytest.fixture
def hub_here(model_dir, tmp_path, monkeypatch):
    """A compiled project with `hf:` weights, huggingface_hub in this process pointed at a fake
    Hub serving them (no token) and at an empty cache; the artifact and the repository."""
    from huggingface_hub import constants

    from genbac.compiler.artifact import Artifact

    cwd = project(tmp_path / "p", "hf:genbac-test/tiny")
    r = subprocess.run([sys.executable, "-m", "genbac", "compile", "hub.genba", "-o", "out"],
                       cwd=cwd, capture_output=True, text=True, env=env_for(cwd))
    assert r.returncode == 0, r.stderr
    repo = Repo.from_directory(model_dir)
    with FakeHub({"genbac-test/tiny": repo}) as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield Artifact.load(cwd / "out"), repo, tmp_path / "cache"


def test_preflight_counts_the_hub_download_against_the_disk_it_goes_to(hub_here, monkeypatch):
    from genbac.runtime import preflight as check
    from genbac.units import size_text

    artifact, repo, cache = hub_here
    fetched = sum(len(data) for name, data in repo.files.items()
                  if "/" not in name and name not in ("pytorch_model.bin", "README.md"))
    assert fetched > 20 * 2**20  # model.safetensors and the small files beside it

    # the cache on the work directory's disk: one sum, one check
    verdict = check.preflight(artifact)
    assert not verdict.problems, verdict.problems
    (disk,) = [e for e in verdict.estimates if e.startswith("disk ")]
    assert f"Hub download {size_text(fetched)}" in disk, disk
    written, _ = check.disk_needed(artifact, "local", set())
    monkeypatch.setattr(check, "free_bytes", lambda path: written + 2**20)
    (problem,) = check.preflight(artifact).problems
    assert problem.startswith(f"not enough disk: the remaining steps write about "
                              f"{size_text(written + fetched)} (") and "Hub download" in problem

    # the cache on a disk of its own, and too small for the download
    monkeypatch.setattr(check, "same_filesystem", lambda a, b: False)
    monkeypatch.setattr(check, "free_bytes",
                        lambda path: 2**20 if Path(path) == cache else 2**40)
    (problem,) = check.preflight(artifact).problems
    assert problem == (f"not enough disk for the Hub download: about {size_text(fetched)} into "
                       f"the Hugging Face cache {cache}, which has 1.00 MiB free (point HF_HOME "
                       "or HF_HUB_CACHE at a larger disk)")

    # once the snapshot is in the cache there is nothing left to fetch (downloaded in a process
    # of its own: huggingface_hub fixes its file URLs' endpoint at import)
    from huggingface_hub import constants

    env = {**os.environ, "HF_ENDPOINT": constants.ENDPOINT, "HF_HUB_CACHE": str(cache),
           "HF_HUB_OFFLINE": "0"}
    fetch = ("from genbac.runtime import hub; "
             "hub.download(hub.ref_of('genbac-test/tiny'), 'weights')")
    r = subprocess.run([sys.executable, "-c", fetch], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    verdict = check.preflight(artifact)
    assert not verdict.problems, verdict.problems
    assert not [e for e in verdict.estimates if "Hub download" in e], verdict.estimates
