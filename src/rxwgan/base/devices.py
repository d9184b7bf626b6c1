"""Device and numeric precision choices: one place decides, the training loop just asks."""

from __future__ import annotations

import contextlib
import ctypes
import platform
from collections.abc import Iterator

import torch

from rxwgan.base.errors import RxwganError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RxwganError(f"--device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RxwganError(f"--device {name}: no CUDA device is available on this machine")
    return device


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), so autocast pays off."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the hardware computes it natively, fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_supports_bf16() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise RxwganError(f"--precision must be auto, fp32 or bf16, not {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The mixed-precision context for forward passes (a no-op for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# glibc's mallopt parameters (malloc.h) and the values the block below leaves behind: blocks
# over 32 MB mapped on their own, the heap's free top trimmed past 64 MB (where glibc's own
# dynamic thresholds end up once a program has freed large blocks).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_MMAP_THRESHOLD, _TRIM_THRESHOLD, _MMAP_MAX = 32 << 20, 64 << 20, 65536


@contextlib.contextmanager
def reused_cpu_memory(enabled: bool = True) -> Iterator[bool]:
    """Inside the block, glibc keeps the memory a step frees for the next step; yields whether.

    A training step frees and allocates the same large tensors every time. glibc maps every
    block over 32 MB afresh and unmaps it when freed, so each step pays a page fault per
    4 KiB it writes: a third of a v1 step on a 2-core CPU. Inside the block, freed blocks
    stay in the heap and the next step reuses them. On leaving it, the heap's free pages go
    back to the system (malloc_trim), so validation, evaluation and checkpoints between
    epochs run under the usual rules and the resident memory does not grow from epoch to epoch.
    A no-op where the C library is not glibc or ``enabled`` is False.
    """
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield True
    finally:
        libc.mallopt(_M_MMAP_MAX, _MMAP_MAX)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)
