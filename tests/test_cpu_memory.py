"""CPU runs keep freed memory for the next step (glibc), unless --release-cpu-memory says not to.

Each case runs in a child process: the setting is process-wide, so it must not leak into
(or come from) the test process.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from rxwgan.phantoms import write_demo_data

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the setting applies to glibc only")

# Train a tiny run through the CLI, then write and free a 64 MB tensor twenty times and print
# the page faults of the last ten rounds: about 0 when freed memory is reused, ~160,000 when
# every round maps fresh pages.
CHILD = """
import resource, sys, torch
from rxwgan.cli import main
code = main(sys.argv[1:])
assert code == 0, code

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

counts = []
for _ in range(20):
    before = faults()
    x = torch.ones(16 * 2**20)
    y = x * 2
    del x, y
    counts.append(faults() - before)
print(sum(counts[10:]))
"""


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("demo"), n_images=20, size=32, seed=3)


def _train_then_count_faults(table: Path, out: Path, *flags: str) -> int:
    args = ["train", "-i", str(table), "-o", str(out), "--model", "tiny", "--epochs", "1",
            "--batch_size", "4", "--n_splits", "2", "--device", "cpu", "--no-progress", *flags]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_a_cpu_run_keeps_freed_memory_for_reuse(table, tmp_path):
    assert _train_then_count_faults(table, tmp_path / "run") < 2_000
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["reuse_cpu_memory"] is True


def test_release_cpu_memory_leaves_the_system_default(table, tmp_path):
    assert _train_then_count_faults(table, tmp_path / "run", "--release-cpu-memory") > 100_000
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["reuse_cpu_memory"] is False
