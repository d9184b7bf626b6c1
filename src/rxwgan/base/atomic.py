"""Atomic file writes: a run killed at any instant leaves the old file or the new one.

The temporary file sits beside the target as ``.<name>.<random>.tmp``: hidden, and with no
image extension, so a folder scan for images never picks up a half-written one. Callers
that write through a library which guesses the format from the name must pass the format.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError

NEW_FILE_MODE = 0o666  # less the umask, as a plain open() gives
# ".<target>.<random>.tmp"; earlier versions added the target's suffix (".x.png.k3x_9q2z.tmp.png")
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[0-9a-z_]+\.tmp(?:\.[0-9A-Za-z]+)?")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    Any OSError on the way (a full disk, a path under a file, a read-only folder) becomes
    an RxwganError naming ``path``; the previous file, if any, is left as it was.
    """
    target = Path(path)
    try:
        tmp = _create_temporary(target)
    except OSError as exc:
        raise _write_error(target, exc) from None
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise _write_error(target, exc) from None
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temporary(target: Path) -> Path:
    """An empty new file beside ``target``, created with the umask applied (mkstemp's is 0600)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE))
        except FileExistsError:
            continue
        return tmp


def temporary_target(name: str) -> str | None:
    """The target's name if ``name`` is one of our temporary files (a killed writer's), else None."""
    match = _TEMPORARY.fullmatch(name)
    return match["target"] if match else None


def _write_error(target: Path, exc: OSError) -> RxwganError:
    """One line naming the file; for a path under a file, the file in the way."""
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                return RxwganError(f"cannot write {target}: {parent} is a file, not a folder")
            break
    if target.is_dir():
        return RxwganError(f"cannot write {target}: it is a folder")
    return RxwganError(f"cannot write {target}: {exc.strerror or exc}")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")
