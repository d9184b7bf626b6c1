"""Images per second written by ``rxwgan generate`` and the memory it peaks at.

Throughput: a randomly initialised v1 (128 px) writing 8-bit PNGs at batch 64. Memory: each
run is a fresh subprocess reporting its own peak resident set (``ru_maxrss``); the N = 10,000
run uses the ``tiny`` model (v1 writes ~5-10 images/s on two cores, so 10,000 would take
far longer than a bench may), next to N = 1,000 of the same model to show the peak does not
grow with N. ``run()`` returns the figures for a bench driver; as a script it prints them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from rxwgan.models import build_generator, save_model

_CHILD = """
import json, resource, sys, time
from rxwgan.synth.generate import generate
model, n, out, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
result = generate(model, n, out, batch_size=batch, progress=False)
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"seconds": seconds, "written": result.written, "peak_mib": peak_kib / 1024}))
"""


def _generate_in_child(model: Path, n: int, out: Path, batch_size: int) -> dict:
    """One ``generate`` call in a fresh interpreter: its time and its own peak memory."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(n), str(out), str(batch_size)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(n_throughput: int = 256, n_memory: int = 10_000, n_memory_small: int = 1_000,
        batch_size: int = 64, memory_model: str = "tiny") -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        save_model(build_generator("v1"), root / "v1.safetensors")
        save_model(build_generator(memory_model), root / f"{memory_model}.safetensors")
        load_before = os.getloadavg()[0]
        v1 = _generate_in_child(root / "v1.safetensors", n_throughput, root / "v1_out", batch_size)
        small = _generate_in_child(root / f"{memory_model}.safetensors", n_memory_small,
                                   root / "small_out", batch_size)
        large = _generate_in_child(root / f"{memory_model}.safetensors", n_memory,
                                   root / "large_out", batch_size)
    rate = v1["written"] / v1["seconds"]
    return {
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,  # other work on the machine slows every figure
        "batch_size": batch_size,
        "v1_n": n_throughput,
        "v1_seconds": v1["seconds"],
        "v1_images_per_second": rate,
        "v1_estimated_seconds_for_10000": n_memory / rate,
        "v1_peak_mib": v1["peak_mib"],
        "memory_model": memory_model,
        f"{memory_model}_n_small": n_memory_small,
        f"{memory_model}_peak_mib_small": small["peak_mib"],
        f"{memory_model}_seconds_small": small["seconds"],
        f"{memory_model}_n_large": n_memory,
        f"{memory_model}_peak_mib_large": large["peak_mib"],
        f"{memory_model}_seconds_large": large["seconds"],
        "peak_growth_mib": large["peak_mib"] - small["peak_mib"],
    }


if __name__ == "__main__":
    r = run()
    m = r["memory_model"]
    print(
        f"generate v1 128px png batch {r['batch_size']} ({r['torch_threads']} threads, load "
        f"{r['load_average_before']:.1f}): {r['v1_images_per_second']:.1f} images/s "
        f"(N={r['v1_n']}, peak {r['v1_peak_mib']:.0f} MiB; 10,000 would take "
        f"~{r['v1_estimated_seconds_for_10000'] / 60:.0f} min); peak memory with {m}: "
        f"N={r[f'{m}_n_small']}: {r[f'{m}_peak_mib_small']:.0f} MiB, "
        f"N={r[f'{m}_n_large']}: {r[f'{m}_peak_mib_large']:.0f} MiB "
        f"({r[f'{m}_seconds_large']:.0f} s)"
    )
