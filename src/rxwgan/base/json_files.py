"""Reading the small JSON files runs and studies write, while another process may be replacing them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON file, or {} when it is absent or being replaced."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError: cut short, not JSON, or not even text
        return {}
    return data if isinstance(data, dict) else {}


def last_value(values: Any) -> float | None:
    """The last number of a history series (metrics may be recorded only every few epochs)."""
    if not isinstance(values, list):
        return None
    for value in reversed(values):
        if is_number(value):
            return float(value)
    return None


def is_number(value: Any) -> bool:
    """A JSON number (a bool is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
