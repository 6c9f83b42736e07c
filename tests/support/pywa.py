"""The pywa webhook payloads (real Meta shapes), loaded from the shared fixtures directory."""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

# ../shared beside the repository (as on the developers' machines and in CI).
FIXTURES = Path(
    os.environ.get(
        "PYWA_FIXTURES",
        Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "meta-webhooks" / "pywa",
    )
)


@cache
def _all() -> dict[str, dict[str, Any]]:
    payloads: dict[str, dict[str, Any]] = {}
    if not FIXTURES.is_dir():
        raise FileNotFoundError(f"pywa fixtures not found at {FIXTURES} (set PYWA_FIXTURES)")
    for path in sorted(FIXTURES.glob("*.json")):
        for case, payload in json.loads(path.read_text()).items():
            payloads[f"{path.stem}:{case}"] = payload
    return payloads


def payloads() -> dict[str, dict[str, Any]]:
    """Every payload as `{"file:case": body}` (deep copies: tests may change them)."""
    return copy.deepcopy(_all())


def payload(key: str) -> dict[str, Any]:
    return copy.deepcopy(_all()[key])


def message(key: str) -> dict[str, Any]:
    """The (single) message of a messages payload."""
    [msg] = payload(key)["entry"][0]["changes"][0]["value"]["messages"]
    return msg


def status(key: str) -> dict[str, Any]:
    [st] = payload(key)["entry"][0]["changes"][0]["value"]["statuses"]
    return st
