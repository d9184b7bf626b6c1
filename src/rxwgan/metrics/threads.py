"""Thread limits for the metrics' many small tensor operations.

PyTorch splits every operation over all its intra-op threads. For small ones (a 248-d
covariance, KID's 100 subset kernels, the encoder's batches of 32) the threads meet at a
barrier after microseconds of work, and on a busy machine each meeting waits for a core:
measured on two cores with one other process running, FID of 100 x 248 features took
1.6 s on two threads against 0.01 s on one, and 200 encoder steps 32 s against 6 s.
Large work (feature extraction in batches of 256, a 2048-d FID) keeps every thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# Work below this many multiply-adds per operation runs on one thread.
SMALL_WORK = 1 << 26


@contextlib.contextmanager
def limited_threads(count: int) -> Iterator[None]:
    """At most ``count`` intra-op threads inside the block, then as before."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(count, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_for(work: int) -> contextlib.AbstractContextManager:
    """One thread for small work, every thread otherwise."""
    return limited_threads(1) if work < SMALL_WORK else contextlib.nullcontext()
