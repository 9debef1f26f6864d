"""Helpers shared by the runtime tests."""


def stand_in_tools(bin_dir):
    """`cszoo` (the stand-in, tests/runtime/fake_cszoo.py) and `genbac` (this interpreter's) as
    executables in bin_dir, for run.sh's CSZOO and GENBAC and the backend's GENBAC_CSZOO."""
    import shlex
    import sys
    from pathlib import Path

    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    fake = Path(__file__).resolve().parent / "fake_cszoo.py"
    (bin_dir / "cszoo").write_text(f"#!{sys.executable}\n" + fake.read_text())
    (bin_dir / "genbac").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m genbac "
                                    '"$@"\n')
    for tool in ("cszoo", "genbac"):
        (bin_dir / tool).chmod(0o755)
    return bin_dir
