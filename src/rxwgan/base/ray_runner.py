"""Many tasks on Ray: the one place that joins a cluster, retries, and collects what each task did.

``sweep`` (one training run per task) and ``utility`` (one classifier run per task) fan out
the same way, so they share one policy: what Ray retries, how a finished task reads, what
Ctrl-C does. A task reports its own user error as a returned ``{"state": "failed",
"error": ...}`` (retrying cannot cure a bad setting), so an exception that reaches Ray is
either one a second attempt can cure (``retried_exceptions``) or a bug.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rxwgan.base.errors import RxwganError, first_line

CONNECT_TIMEOUT_S = 5.0  # an address nothing answers on is refused after this, not after Ray's minutes
TICK_S = 1.0  # the longest the driving loop waits before calling ``tick`` again
GRACE_S = 30.0  # after Ctrl-C: how long cancelled tasks get to checkpoint and stop


def retried_exceptions() -> tuple[type[BaseException], ...]:
    """The exceptions a second attempt can cure; anything else a task raises is a bug to report."""
    import torch

    return (
        OSError,  # a full disk since freed, a flaky network share, a file another job held
        MemoryError,  # host memory another job on the node had taken
        torch.OutOfMemoryError,  # a GPU shared with another job, or fragmented by a previous one
    )


@dataclass(frozen=True)
class Outcome:
    """How one task ended: its state ("done", "failed", or what the task reported), why it
    failed, and the dict the task returned (empty when Ray gave up on it)."""

    state: str
    error: str = ""
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, report: dict[str, Any]) -> Outcome:
        """The outcome a task reported itself (``{"state": ..., "error": ..., ...}``)."""
        return cls(report["state"], report.get("error", ""), report)

    @classmethod
    def crashed(cls, exc: BaseException) -> Outcome:
        return cls("failed", f"{type(exc).__name__}: {first_line(exc)}")


def start_local_ray(num_cpus: int | None = None) -> None:
    """A private Ray instance on this machine: loopback only, no dashboard, no usage report."""
    if "ray" not in sys.modules:
        # Read by Ray when imported: makes it bind its services to 127.0.0.1, not the LAN address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)


def join_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (``--address``), or start a private local instance of
    ``num_cpus`` CPUs; True when this call started Ray, so that the caller shuts down only that.

    Ray already running in this process (a notebook, a test) is used as it is.
    """
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False
    if address is None:
        start_local_ray(num_cpus)
        return True
    _check_reachable(address)
    import ray

    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise RxwganError(f"--address {address}: no Ray cluster there ({first_line(exc)})") from None
    return True


@contextmanager
def joined_ray(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """``join_ray`` for a block, and ``ray.shutdown`` after it when the block started Ray."""
    started = join_ray(address, num_cpus)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def _check_reachable(address: str) -> None:
    """Refuse at once a HOST:PORT nothing listens on (Ray would keep trying for minutes)."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RxwganError(f"--address {address}: no Ray cluster there ({first_line(exc)})") from None


def largest_node() -> tuple[float, float]:
    """The most CPUs and the most GPUs one live node of the joined cluster has."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    return (max((node.get("CPU", 0) for node in nodes), default=0),
            max((node.get("GPU", 0) for node in nodes), default=0))


def require_a_node_with(cpus: float, gpus: float, cpus_flag: str, gpus_flag: str) -> None:
    """Refuse in one line a task no node can hold: Ray would keep it waiting, silently, for ever."""
    node_cpus, node_gpus = largest_node()
    requests = ((gpus_flag, gpus, node_gpus, "GPUs"), (cpus_flag, cpus, node_cpus, "CPUs"))
    for flag, asked, most, what in requests:
        if asked > most:
            raise RxwganError(f"{flag} {asked:g}: no node of the Ray cluster has that many {what} "
                              f"(the most on one node: {most:g})")


def run_tasks(function: Callable[..., dict[str, Any]], arguments: Sequence[tuple], *,
              ended: Callable[[int, Outcome], None], num_cpus: float = 1, num_gpus: float = 0,
              max_retries: int = 3, max_concurrent: int | None = None,
              tick: Callable[[bool], None] | None = None) -> None:
    """``function(*args)`` as a Ray task for each of ``arguments``, at most ``max_concurrent`` at once.

    ``ended(index, outcome)`` is called as each task ends, ``tick(any_ended)`` at least every
    ``TICK_S`` seconds (to redraw a table). On Ctrl-C the running tasks are cancelled and given
    ``GRACE_S`` to stop before the KeyboardInterrupt goes on. Needs Ray joined (``join_ray``).
    """
    import ray

    task = ray.remote(function).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
                                        retry_exceptions=list(retried_exceptions()))
    queue, running = deque(enumerate(arguments)), {}
    try:
        while queue or running:
            while queue and (max_concurrent is None or len(running) < max_concurrent):
                index, args = queue.popleft()
                running[task.remote(*args)] = index
            ready, _ = ray.wait(list(running), num_returns=1, timeout=TICK_S)
            for ref in ready:
                ended(running.pop(ref), _outcome(ref))
            if tick is not None:
                tick(bool(ready))
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref)
        if running:
            ray.wait(list(running), num_returns=len(running), timeout=GRACE_S)
        raise


def _outcome(ref: Any) -> Outcome:
    """A finished task's outcome: its own report, or why Ray gave up on it."""
    import ray

    try:
        return Outcome.of(ray.get(ref))
    except ray.exceptions.RayTaskError as exc:  # raised, and retried until max_retries if curable
        return Outcome.crashed(exc.cause if isinstance(exc.cause, BaseException) else exc)
    except ray.exceptions.RayError as exc:  # the worker or its node died max_retries + 1 times
        return Outcome.crashed(exc)
