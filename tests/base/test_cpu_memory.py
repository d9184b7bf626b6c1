"""CPU training steps reuse the memory they free (glibc), unless --release-cpu-memory says not to.

The allocator cases run in a child process: the setting is process-wide while it lasts, so it
must not leak into (or come from) the test process.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from rxwgan.cli import main
from rxwgan.data.phantoms import write_demo_data
from rxwgan.train import loop

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the setting applies to glibc only")

# Write and free two 64 MB tensors twenty times inside reused_cpu_memory(ENABLED); print the page
# faults of the last ten rounds (0 to 32,768 when freed memory is reused: glibc's alignment
# padding can leave a freed block just too small once; 327,680 when every round maps fresh
# pages), then the resident MB before and after leaving the block with 512 MB freed.
CHILD = """
import resource, sys, torch
from rxwgan.base.devices import reused_cpu_memory

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

with reused_cpu_memory(sys.argv[1] == "on"):
    counts = []
    for _ in range(20):
        before = faults()
        x = torch.ones(16 * 2**20)
        y = x * 2
        del x, y
        counts.append(faults() - before)
    big = torch.ones(128 * 2**20)
    del big
    inside = resident_mb()
print(sum(counts[10:]), inside, resident_mb())
"""


def _child(setting: str) -> tuple[int, float, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, setting], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    faults, inside, after = done.stdout.split()
    return int(faults), float(inside), float(after)


@glibc_only
def test_steps_reuse_freed_memory_and_give_it_back_at_the_end():
    faults, inside, after = _child("on")
    assert faults < 70_000  # at most two of the ten rounds map fresh pages, against all ten
    assert inside - after > 400  # the freed 512 MB went back to the system on leaving the block


@glibc_only
def test_disabled_leaves_the_system_default():
    faults, _, _ = _child("off")
    assert faults > 300_000


@pytest.mark.parametrize(("flags", "expected"), [((), True), (("--release-cpu-memory",), False)])
def test_cpu_runs_ask_for_it_unless_released(tmp_path, monkeypatch, flags, expected):
    asked = []
    real = loop.reused_cpu_memory

    def spy(enabled: bool = True):
        asked.append(enabled)
        return real(enabled)

    monkeypatch.setattr(loop, "reused_cpu_memory", spy)
    table = write_demo_data(tmp_path / "demo", n_images=20, size=32, seed=3)
    out = tmp_path / "run"
    assert main(["train", "-i", str(table), "-o", str(out), "--model", "tiny", "--epochs", "2",
                 "--batch_size", "4", "--n_splits", "2", "--device", "cpu", "--no-progress", *flags]) == 0
    assert asked == [expected, expected]  # once per epoch, around its steps
    assert json.loads((out / "config.json").read_text())["config"]["reuse_cpu_memory"] is expected
