"""One run of a sweep, on a Ray worker: ``rxwgan train`` plus the files the sweep reads back.

Kept apart from the driver (``rxwgan.study.sweep``) because it runs in another process, often on
another node: everything it knows comes from its arguments and the study folder. Ray calls
it again after a crash, and ``train`` resumes from the run folder's checkpoint.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from rxwgan.base import atomic
from rxwgan.base.errors import RxwganError
from rxwgan.base.json_files import read_json
from rxwgan.base.layout import CHECKPOINT_POINTER, SWEEP_FILE, WORKER_FILE
from rxwgan.study.plan import write_status
from rxwgan.train.config import TrainConfig


def train_task(config_data: dict[str, Any], study: str, sweep_id: str, cpus: int) -> dict[str, Any]:
    """One run, as ``rxwgan train`` would do it; Ray calls this again after a crash."""
    import torch

    from rxwgan.train.loop import train

    torch.set_num_threads(max(1, int(cpus)))
    config = TrainConfig.from_dict(config_data)
    out = Path(config.output)
    if read_json(Path(study) / SWEEP_FILE).get("sweep_id") != sweep_id:
        error = (f"{study}/{SWEEP_FILE} on {socket.gethostname()} is not this sweep's: put STUDY/ on "
                 f"storage every node shares (or another sweep of this study has started since)")
        return {"state": "failed", "error": error}
    previous = read_json(out / WORKER_FILE)
    retry = previous.get("sweep_id") == sweep_id
    if retry:  # --overwrite cleared the folder on the first attempt; later ones resume
        config.overwrite = False
    gpus = _gpu_ids()
    if not gpus and config.device == "auto":  # Ray hides no GPU from a run given none
        config.device = "cpu"
    pointer = read_json(out / CHECKPOINT_POINTER)
    atomic.write_json(out / WORKER_FILE, {
        "pid": os.getpid(), "host": socket.gethostname(), "node_ip": _node_ip(),
        "sweep_id": sweep_id, "attempt": previous.get("attempt", 0) + 1 if retry else 1,
        "started": time.time(), "start_epoch": 0 if config.overwrite else pointer.get("epoch", 0),
        "gpus": gpus,
    })
    write_status(out, "running", sweep_id)
    name = f"{Path(config.output).parent.name}/{Path(config.output).name}"
    try:
        result = train(config, log=lambda message: print(f"[{name}] {message}", flush=True))
    except RxwganError as exc:
        write_status(out, "failed", sweep_id, str(exc))
        return {"state": "failed", "error": str(exc)}
    state = "stopped" if result.interrupted else "done"
    write_status(out, state, sweep_id)
    return {"state": state, "epoch": result.epoch}


def _node_ip() -> str | None:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray the address is only informative
        return None


def _gpu_ids() -> list[str]:
    try:
        import ray

        return [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    except Exception:  # outside Ray: no assignment to report
        return []
