"""How sizes are shown to people, the one definition."""

from __future__ import annotations


def size_text(n: float) -> str:
    """Bytes in binary units: 1.50 GiB, 12.00 MiB, 3.00 KiB, 17 bytes."""
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} bytes"
