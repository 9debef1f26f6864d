"""`genbac explain --plot`: a PNG of the mixture schedule, byte-stable; matplotlib only on demand."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from genbac.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "tests" / "fixtures" / "diff" / "base.genba"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def explain_plot(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genbac", "explain", "--plot", str(out),
                           str(SPEC)], capture_output=True, text=True)


def test_plot_is_a_sane_png_and_byte_stable(tmp_path):
    first, second = tmp_path / "a" / "mix.png", tmp_path / "b.png"
    r = explain_plot(first)  # a directory that does not exist yet is made
    assert r.returncode == 0, r.stderr
    assert "### " not in r.stdout and "Schedule" in r.stdout  # the text explanation, as without
    data = first.read_bytes()
    assert png_size(data) == (880, 550)  # 8 x 5 inches at 110 dpi
    assert 10_000 < len(data) < 1_000_000
    assert b"tIME" not in data and b"Software" not in data  # nothing that changes run to run
    assert explain_plot(second).returncode == 0  # another process, the same bytes
    assert second.read_bytes() == data


def test_unwritable_plot_path_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["explain", "--plot", str(blocker / "mix.png"), str(SPEC)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genbac: error: cannot write {blocker / 'mix.png'}") and "Traceback" \
        not in err


def test_explain_without_plot_does_not_import_matplotlib():
    probe = ("import sys; from genbac.cli import main; code = main(sys.argv[1:]); "
             "print(code, 'matplotlib' in sys.modules, file=sys.stderr)")
    for args in (["explain", str(SPEC)], ["explain", "--format", "markdown", str(SPEC)],
                 ["diff", str(SPEC), str(SPEC)]):
        r = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True)
        assert r.stderr.strip().splitlines()[-1] == "0 False", (args, r.stderr)


def test_a_language_name_is_text_not_mathtext(tmp_path):
    """`$…$` in a name would be typeset as mathtext by matplotlib, and malformed mathtext raises:
    the name is drawn as it is written."""
    spec = tmp_path / "exp.genba"
    spec.write_text((ROOT / "examples" / "tiny-rehearsal.genba").read_text().replace(
        '"English"', '"E $\\\\frac{ x$ _^"'))
    r = subprocess.run([sys.executable, "-m", "genbac", "explain", "--plot",
                        str(tmp_path / "m.png"), str(spec)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert png_size((tmp_path / "m.png").read_bytes()) == (880, 550)
