"""Full training checkpoints: everything resume needs to continue as if never stopped.

A checkpoint is a ``torch.save`` dict of tensors and plain values, loaded back with
``weights_only=True`` so no pickled code runs: a file that fails that is damaged, never a
reason to trust it more. ``checkpoint.json`` names the newest file with its sha256 and
lists the ones kept (newest last); older files are pruned in that order, never by name,
and only once the newer file and its pointer are on disk. A damaged newest checkpoint
falls back to the previous one with a warning; a lost pointer is rebuilt from the files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.layout import CHECKPOINT_FOLDER, CHECKPOINT_POINTER
from rxwgan.models.files import file_sha256

FORMAT = "rxwgan-checkpoint"
KEEP = 2


def save_checkpoint(out_dir: Path, state: dict[str, Any], label: str) -> Path:
    """Write ``checkpoints/<label>.pt``, point ``checkpoint.json`` at it, prune the oldest."""
    path = out_dir / CHECKPOINT_FOLDER / f"{label}.pt"
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)
        digest = file_sha256(tmp)
    entry = {"file": f"{CHECKPOINT_FOLDER}/{path.name}", "sha256": digest, "epoch": state["epoch"],
             "batch": (state.get("partial") or {}).get("batch"),
             "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
    history = [e for e in _pointer_history(out_dir) if e["file"] != entry["file"]] + [entry]
    kept = history[-KEEP:]
    atomic.write_json(out_dir / CHECKPOINT_POINTER, {**entry, "kept": kept})
    kept_files = {e["file"] for e in kept}
    for old in (out_dir / CHECKPOINT_FOLDER).glob("*.pt"):
        if f"{CHECKPOINT_FOLDER}/{old.name}" not in kept_files:
            old.unlink(missing_ok=True)
    return path


def has_checkpoint(out_dir: Path) -> bool:
    """Whether the folder holds a checkpoint pointer or file (intact or not)."""
    return (out_dir / CHECKPOINT_POINTER).is_file() or any((out_dir / CHECKPOINT_FOLDER).glob("*.pt"))


def load_checkpoint(out_dir: Path, map_location: str | torch.device = "cpu",
                    warn: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The newest intact checkpoint, or None when the folder never had one.

    Tries the pointer's files newest first (checking their sha256), then any other
    checkpoint file in the folder, newest by content; says which damaged file was skipped.
    Raises RxwganError when checkpoints exist but none is intact.
    """
    damaged: list[str] = []
    listed = list(reversed(_pointer_history(out_dir)))
    for entry in listed:
        state, problem = _read(out_dir / entry["file"], map_location, entry.get("sha256"))
        if state is not None:
            _warn_fallback(warn, damaged, entry["file"])
            return state
        damaged.append(f"{entry['file']} ({problem})")
    others = []
    listed_files = {e["file"] for e in listed}
    for path in (out_dir / CHECKPOINT_FOLDER).glob("*.pt"):
        if f"{CHECKPOINT_FOLDER}/{path.name}" in listed_files:
            continue
        state, problem = _read(path, map_location, None)
        if state is None:
            damaged.append(f"{CHECKPOINT_FOLDER}/{path.name} ({problem})")
        else:
            others.append((_order(state), path, state))
    if others:
        _, path, state = max(others, key=lambda item: item[0])
        _warn_fallback(warn, damaged, f"{CHECKPOINT_FOLDER}/{path.name}", pointer_lost=not listed)
        return state
    if damaged:
        raise RxwganError(f"{out_dir}: no intact checkpoint ({'; '.join(damaged)}); start afresh "
                          f"with --overwrite (it removes this run's files) or choose another -o")
    if (out_dir / CHECKPOINT_POINTER).is_file():
        raise RxwganError(f"{out_dir / CHECKPOINT_POINTER} names no checkpoint file and "
                          f"{out_dir / CHECKPOINT_FOLDER} holds none; start afresh with --overwrite or "
                          f"choose another -o")
    return None


def _warn_fallback(warn: Callable[[str], None], damaged: list[str], used: str,
                   pointer_lost: bool = False) -> None:
    if damaged:
        warn(f"warning: skipped damaged checkpoint(s) {'; '.join(damaged)}; resuming from {used}")
    elif pointer_lost:
        warn(f"warning: {CHECKPOINT_POINTER} is missing or unreadable; resuming from {used}, the newest "
             f"intact checkpoint found")


def _pointer_history(out_dir: Path) -> list[dict[str, Any]]:
    """The pointer's kept checkpoints, oldest first; [] when it is missing or unreadable."""
    try:
        pointer = json.loads((out_dir / CHECKPOINT_POINTER).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(pointer, dict):
        return []
    kept = pointer.get("kept")
    entries = kept if isinstance(kept, list) else [pointer]
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("file"), str)
            and e["file"].startswith(f"{CHECKPOINT_FOLDER}/")
            and "/" not in e["file"][len(CHECKPOINT_FOLDER) + 1:]]


def _read(path: Path, map_location: str | torch.device,
          sha256: str | None) -> tuple[dict[str, Any] | None, str]:
    """(state, "") for an intact checkpoint, else (None, what is wrong with it)."""
    if not path.is_file():
        return None, "missing"
    if sha256 is not None and file_sha256(path) != sha256:
        return None, "checksum mismatch"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle safely means damage
        return None, f"unreadable: {type(exc).__name__}"
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None, "not an rxwgan checkpoint"
    return state, ""


def _order(state: dict[str, Any]) -> tuple[int, int]:
    """Training position of a checkpoint: (epochs done, batches into the next one)."""
    return int(state["epoch"]), int((state.get("partial") or {}).get("batch") or 0)
