"""Optional packages: the report, the status table and training need neither Ray nor ONNX, and a
verb that needs one of them names the extra to install.

Each check runs the CLI in a fresh interpreter: with a package "uninstalled" there
(``sys.modules[name] = None``, so that ``import name`` raises ImportError and
``importlib.util.find_spec(name)`` finds nothing), or with everything installed and a
look afterwards at which modules were imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rxwgan
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.splits import SplitSpec
from rxwgan.train.config import TrainConfig
from rxwgan.train.loop import train

OPTIONAL = ("ray", "onnx", "onnxruntime")
SCRIPT = """
import contextlib, io, json, sys
for name in {hidden!r}:
    sys.modules[name] = None
from rxwgan.cli import main
results = []
for argv in {commands!r}:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append({{"code": code, "out": out.getvalue(), "err": err.getvalue()}})
import rxwgan.train.loop  # plain training, imported beside the verbs
loaded = sorted(n for n in sys.modules if n.split(".")[0] in {optional!r} and sys.modules[n] is not None)
print(json.dumps({{"results": results, "loaded": loaded}}))
"""


def run_cli(commands: list[list[str]], hidden: tuple[str, ...] = ()) -> tuple[list[dict], list[str]]:
    """Each command's exit code, stdout and stderr, and the optional modules the process imported."""
    source = Path(rxwgan.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")])}
    script = SCRIPT.format(hidden=hidden, commands=commands, optional=OPTIONAL)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    return report["results"], report["loaded"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Two finished one-epoch runs, as `rxwgan train` leaves them."""
    root = tmp_path_factory.mktemp("extras")
    table = write_demo_data(root / "data", n_images=40, size=32, seed=7)
    for target in (0, 1):
        train(TrainConfig(input=str(table), output=str(root / "study" / "fold_0" / f"target_{target}"),
                          model="tiny", epochs=1, batch_size=4, n_critic=2,
                          split=SplitSpec(fold=0, n_splits=2),
                          target=target, save_for_each=10, disp_for_each=10, precision="fp32",
                          cache_dir=str(root / "data" / "cache"), progress=False), log=lambda _: None)
    return root / "study"


def read_back(study: Path, out: Path) -> list[list[str]]:
    return [["report", str(study), "-o", str(out)], ["sweep", "--status", str(study)]]


def check_read_back(results: list[dict], out: Path) -> None:
    report, status = results
    assert report["code"] == 0 and f"wrote {out / 'report.html'} (2 runs)" in report["out"]
    assert (out / "runs.csv").is_file()
    assert status["code"] == 0 and "2 done" in status["out"]


def test_report_and_status_run_without_ray(study, tmp_path):
    results, _ = run_cli(read_back(study, tmp_path / "report"), hidden=OPTIONAL)
    check_read_back(results, tmp_path / "report")


def test_report_status_and_training_import_no_optional_package(study, tmp_path):
    results, loaded = run_cli(read_back(study, tmp_path / "report"))
    check_read_back(results, tmp_path / "report")
    assert loaded == []


def test_verbs_that_need_an_extra_name_it(study, tmp_path):
    table = study.parent / "data" / "table.csv"
    onnx = tmp_path / "g.onnx"
    sweep = ["sweep", "-i", str(table), "-o", str(tmp_path / "study"), "--model", "tiny", "--epochs", "1",
             "--n_splits", "2", "--cache-dir", str(study.parent / "data" / "cache")]
    export = ["export", "-g", str(study / "fold_0" / "target_1" / "generator_trained.safetensors"),
              "--onnx", str(onnx)]
    (sweep_result, export_result), _ = run_cli([sweep, export], hidden=OPTIONAL)
    assert sweep_result["code"] == 2
    assert sweep_result["err"].strip().splitlines() == [
        "rxwgan: error: rxwgan sweep needs ray, not installed here: pip install 'rxwgan[sweep]'"]
    assert not (tmp_path / "study").exists()
    assert export_result["code"] == 2
    assert export_result["err"].strip().splitlines() == [
        "rxwgan: error: rxwgan export --onnx needs onnx and onnxruntime, not installed here: "
        "pip install 'rxwgan[export]'"]
    assert not onnx.exists()
