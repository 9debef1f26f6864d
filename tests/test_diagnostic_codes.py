"""Every diagnostic code the source can emit is documented, and every documented code is used."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_codes_documented():
    used = set()
    for path in list((ROOT / "spec").rglob("*.py")) + list((ROOT / "compiler").rglob("*.py")):
        used |= set(re.findall(r'"(GB\d{3})"', path.read_text()))
    documented = set(re.findall(r"^\| (GB\d{3}) \|", (ROOT / "spec" / "diagnostics.md").read_text(),
                                re.M))
    assert used == documented, (used - documented, documented - used)
