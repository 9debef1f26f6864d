"""The VS Code extension in editors/vscode holds together: the manifest's language, grammar,
editing rules and entry point exist and agree with each other and with the server's command; the
client script is valid JavaScript that loads the real vscode-languageclient. (VS Code itself
cannot run here: the extension is not started in an editor by these tests.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editors" / "vscode"


def manifest() -> dict:
    return json.loads((EXTENSION / "package.json").read_text())


def test_the_manifest_contributes_the_genba_language_with_its_grammar():
    m = manifest()
    (language,) = m["contributes"]["languages"]
    assert (language["id"], language["extensions"]) == ("genba", [".genba"])
    config = json.loads((EXTENSION / language["configuration"]).read_text())
    assert config["comments"] == {"lineComment": "#"}  # as the grammar's COMMENT: `#` to the end
    (grammar,) = m["contributes"]["grammars"]
    assert grammar["language"] == "genba"
    tm = json.loads((EXTENSION / grammar["path"]).read_text())
    assert tm["scopeName"] == grammar["scopeName"] == "source.genba"
    assert (EXTENSION / m["main"]).is_file()
    props = m["contributes"]["configuration"]["properties"]
    assert props["genba.server.command"]["default"] == "genbac"
    assert props["genba.server.args"]["default"] == ["lsp"]  # the command in genbac/cli.py
    # versions are pinned (the lockfile is committed) and the lockfile agrees
    lock = json.loads((EXTENSION / "package-lock.json").read_text())
    for name, version in {**m["dependencies"], **m["devDependencies"]}.items():
        assert version[0].isdigit(), name
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_the_server_command_the_extension_starts_exists():
    from genbac.cli import build_parser

    args = build_parser().parse_args(["lsp", "--stdio"])  # the client appends --stdio
    assert args.command == "lsp" and args.stdio


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_client_script_is_valid_and_its_client_library_loads():
    r = subprocess.run(["node", "--check", str(EXTENSION / "extension.js")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    # the library's protocol half needs no editor: it must be installed and load
    r = subprocess.run(["node", "-e", "require('vscode-languageclient/package.json'); "
                        "const p = require('vscode-languageserver-protocol'); "
                        "if (!p.InitializeRequest) process.exit(3);"],
                       cwd=EXTENSION, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
