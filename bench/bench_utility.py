"""Does the synthetic data help? ``rxwgan utility`` end to end on two phantom settings.

For each setting: phantoms -> a 5-fold sweep on Ray (``small``, 64 px, both classes, the
demo's recipe) -> ``rxwgan utility`` (real, real+synth x1, synth, and the label-swapped
control; 3 seeds each) -> the summary across folds and the paired comparisons. ``clear``
is the demo's phantoms (real rows alone already separate the classes); ``subtle`` has
smaller, fainter findings and fewer rows, where the answer is not foregone.

Everything is kept under ``bench/work/utility/<setting>/`` (ignored by git): a setting
whose ``figures.json`` matches the parameters below is not measured again, and its figures
(with the date and the seconds they were measured in) are reported as they are; finished
generators are kept when only the utility parameters change. Delete the folder to measure
afresh; ``RXWGAN_BENCH_UTILITY=clear`` runs one setting.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rxwgan.data.phantoms import write_demo_data
from rxwgan.study.plan import plan_runs, plan_splits
from rxwgan.study.sweep import SweepOptions, run_sweep
from rxwgan.train.config import TrainConfig
from rxwgan.utility.driver import run_utility
from rxwgan.utility.settings import ClassifierSettings, UtilitySettings
from rxwgan.utility.workers import UtilityOptions

WORK = Path(__file__).resolve().parent / "work" / "utility"
SETTINGS = {"clear": {"n_images": 200},
            "subtle": {"n_images": 120, "findings": "subtle"}}
TRAINING = {"model": "small", "kimg": 10.0, "batch_size": 32, "n_critic": 1, "lr": 5e-4, "betas": (0.0, 0.9),
            "dropout": 0.0, "save_for_each": 10**6, "disp_for_each": 10**6}
UTILITY = UtilitySettings(repeats=3, control=("swapped", "duplicated"), classifier=ClassifierSettings())
# The finding's measurement (issue *finding*): on the subtle phantoms, per-class generators at the
# bench's 10 and the demo's 30 kimg per class, against one conditional generator per fold shown
# the same total number of training images (both classes together).
# Name: (phantom setting, training changes, folds); the longer runs on 3 folds to fit a session.
VARIANTS = {"clear": ("clear", {}, 5),
            "subtle": ("subtle", {}, 5),
            "subtle_30kimg": ("subtle", {"kimg": 30.0}, 3),
            "subtle_conditional": ("subtle", {"kimg": 20.0, "conditional": True}, 5),
            "subtle_conditional_60kimg": ("subtle", {"kimg": 60.0, "conditional": True}, 3),
            "subtle_conditional_fade": ("subtle", {"kimg": 20.0, "conditional": True, "fade_kimg": 10.0}, 5)}
DEFAULT_VARIANTS = ("clear", "subtle")


def run() -> dict:
    chosen = os.environ.get("RXWGAN_BENCH_UTILITY", ",".join(DEFAULT_VARIANTS)).split(",")
    return {name: measure(name) for name in chosen}


def measure(name: str) -> dict:
    folder = WORK / name
    setting, changes, folds = VARIANTS[name]
    training = {**TRAINING, **changes}
    parameters = {"data": SETTINGS[setting], "training": {**training, "betas": list(training["betas"])},
                  "utility": UTILITY.to_dict(), "folds": folds}
    saved = folder / "figures.json"
    if saved.is_file() and json.loads(saved.read_text())["parameters"] == parameters:
        return json.loads(saved.read_text())
    started = time.perf_counter()
    table = write_demo_data(folder / "data", size=128, seed=0, **SETTINGS[setting])
    base = TrainConfig(input=str(table), output=str(folder / "study"), progress=False, **training)
    runs = plan_runs(plan_splits("kfold", 5, folds=range(folds)),
                     conditional=training.get("conditional", False))
    sweep = run_sweep(base, folder / "study", runs, SweepOptions(cpus_per_run=1, refresh=600), log=print,
                      live=False)
    sweep_s = time.perf_counter() - started
    result = run_utility(folder / "study", UTILITY, UtilityOptions(), overwrite=True, log=print)
    figures = {
        "parameters": parameters, "measured": time.strftime("%Y-%m-%d %H:%M"),
        "sweep_ok": sweep.ok, "sweep_s": round(sweep_s, 1),
        "generators_trained_in_this_call": len(runs) - len(sweep.skipped),
        "utility_s": round(time.perf_counter() - started - sweep_s, 1),
        "summary": result.summary.round(4).to_dict("records"),
        "comparisons": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items()}
                        for c in result.comparisons],
        "headline": result.headline,
        # what each condition fitted on, per fold: duplicated must match real+synth
        "fit_images": (result.runs.assign(n_fit=result.runs["n_fit_real"] + result.runs["n_fit_synthetic"])
                       .groupby(["condition", "split"])["n_fit"].mean().unstack().to_dict("index")),
        "per_fold_auc": (result.runs.groupby(["condition", "split"])["auc"].mean().round(4)
                         .unstack().to_dict("index")),
        "study": str(folder / "study"),
    }
    saved.write_text(json.dumps(figures, indent=1) + "\n")
    return figures
