"""The spec hash: sha256 over the normalised spec (its IR as canonical JSON).

The IR holds values, not text: formatting, comments, the order of blocks' keys and the way a number
is written (`82B` or `82000M`) do not change it; any change of meaning does.
"""

from __future__ import annotations

import hashlib
import json

from genbac.spec.ir import Spec


def canonical_json(spec: Spec) -> str:
    return json.dumps(spec.to_json(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def spec_hash(spec: Spec) -> str:
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()
