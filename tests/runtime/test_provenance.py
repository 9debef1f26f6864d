"""Provenance: the git state of a spec in a real scratch repository, the installed packages, and
the tags a real rehearsal run carries."""

import subprocess
from importlib import metadata

from genbac.runtime.provenance import (environment, git_state, parse_requirements, requirements)


def git(directory, *args):
    subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
                        "HOME": str(directory), "PATH": "/usr/bin:/bin"})


def test_git_state_of_a_spec(tmp_path):
    spec = tmp_path / "x.genba"
    spec.write_text("experiment \"x\" {}\n")
    assert git_state(spec) == {"git_dirty": "not a git repository",
                               "spec_in_git": "not a git repository"}
    git(tmp_path, "init", "-q")
    assert git_state(spec)["spec_in_git"] == "untracked"
    git(tmp_path, "add", "x.genba")
    git(tmp_path, "commit", "-q", "-m", "spec")
    assert git_state(spec) == {"git_dirty": "no", "spec_in_git": "tracked, committed"}
    spec.write_text("experiment \"y\" {}\n")
    assert git_state(spec) == {"git_dirty": "yes",
                               "spec_in_git": "tracked, with uncommitted changes"}
    git(tmp_path, "commit", "-q", "-am", "y")
    (tmp_path / "other.txt").write_text("untracked files do not make the tree dirty\n")
    assert git_state(spec) == {"git_dirty": "no", "spec_in_git": "tracked, committed"}


def test_requirements_list_every_installed_distribution():
    packages = parse_requirements(requirements())
    assert packages["torch"] == metadata.version("torch")
    assert packages["mlflow"] == metadata.version("mlflow")
    assert len(packages) == len({d.metadata["Name"].lower() for d in metadata.distributions()})


def test_environment_tags_name_the_versions(tmp_path):
    tags = environment("local", tmp_path / "x.genba")
    assert tags["genbac.env.transformers"] == metadata.version("transformers")
    assert tags["genbac.env.cuda"] and tags["genbac.env.nccl"]
    assert "genbac.env.cszoo" not in tags
