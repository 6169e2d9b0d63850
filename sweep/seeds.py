"""Seeds derived from a point's coordinates (never from ``hash()``, which differs per process)."""

from __future__ import annotations

import hashlib
import json

__all__ = ["derive_seed"]


def derive_seed(*parts) -> int:
    """A 63-bit seed from JSON-able ``parts`` by SHA-256: same parts, same seed, on every machine."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
