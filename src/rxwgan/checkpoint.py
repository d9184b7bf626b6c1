"""Full training checkpoints: everything resume needs to continue as if never stopped.

A checkpoint is a ``torch.save`` dict of tensors and plain values (loaded back with
``weights_only=True``, so no pickled code runs). ``checkpoint.json`` names the newest;
older files are pruned only after the newer one and its pointer are on disk.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from rxwgan import atomic
from rxwgan.errors import RxwganError

POINTER = "checkpoint.json"
FOLDER = "checkpoints"
KEEP = 2


def save_checkpoint(out_dir: Path, state: dict[str, Any], label: str) -> Path:
    """Write ``checkpoints/<label>.pt`` then point ``checkpoint.json`` at it."""
    path = out_dir / FOLDER / f"{label}.pt"
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)
    atomic.write_json(out_dir / POINTER, {
        "file": f"{FOLDER}/{path.name}", "epoch": state["epoch"],
        "batch": (state.get("partial") or {}).get("batch"), "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    # Labels sort in training order (the trainer names them by global step).
    for old in sorted((out_dir / FOLDER).glob("*.pt"))[:-KEEP]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def has_checkpoint(out_dir: Path) -> bool:
    return (out_dir / POINTER).is_file()


def read_pointer(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / POINTER).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RxwganError(f"{out_dir / POINTER}: unreadable ({exc})") from None


def load_checkpoint(out_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    pointer = read_pointer(out_dir)
    path = out_dir / pointer["file"]
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise RxwganError(f"{path}: cannot read checkpoint ({exc})") from None
