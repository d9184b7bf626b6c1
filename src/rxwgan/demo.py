"""The demo job behind ``make demo``: the whole pipeline on the shipped phantom X-rays.

phantoms -> table -> cache -> folds -> one generator per class on fold 0 (both at once, one
core each; or one conditional generator for both, ``--conditional``) -> a synthetic set per
class -> its evaluation against the real phantoms -> the study report, in one folder,
small enough for two CPU cores in a few minutes. Re-running continues or skips what is done.

What imports torch is imported in the functions that use it: the command line reads
``DemoSettings`` (``rxwgan demo --help`` states its defaults) without importing torch.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rxwgan.base.layout import (
    CONDITIONAL_RUN,
    EVALUATION_RECORD,
    REPORT_FOLDER,
    SYNTHETIC_GRID,
    UTILITY_SUMMARY_MARKDOWN,
    class_run,
)
from rxwgan.base.local_pool import local_pool
from rxwgan.base.progress import Log
from rxwgan.data.cache import ImageCache
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.splits import partition
from rxwgan.data.table import read_table
from rxwgan.train.config import TARGETS, TrainConfig


@dataclass
class DemoSettings:
    """What the demo changes from TrainConfig's defaults (the rest, the split included, are those).

    The training settings are the ``cpu`` recipe's (``rxwgan.train.recipes``), the one that learned
    the phantoms fastest on two CPU cores in our trials. At 20 kimg it took the two-sample test on
    one class from 0.99 (Adam at 2e-4, betas (0.5, 0.9)) to 0.58. The demo trains 30 kimg: at 20
    the target-0 generator scored between 0.67 and 0.75 depending on the seed, at 30 0.58.
    """

    images: int = 200
    image_size: int = 128
    recipe: str = "cpu"
    model: str | None = None  # None: the recipe's
    # One generator for both classes, shown as many images as the two per-class runs: on the subtle
    # phantoms (bench/bench_utility.py, 5 folds x 3 seeds) its synthetic-only AUC was 0.701 against
    # 0.544 for per-class generators (real rows: 0.735), its two-sample tests 0.48 and 0.45 against 0.70.
    conditional: bool = True
    kimg: float = 30.0  # per class (a conditional run: twice this in all)
    augment: str = ""
    synthetic: int = 200  # images generated per class
    utility_repeats: int = 2  # classifier seeds per condition in the demo's utility table
    utility_epochs: int = 30

    def training(self) -> dict:
        """The TrainConfig settings of the demo's runs: the recipe's, with --model when given."""
        from rxwgan.train.recipes import recipe_settings

        return recipe_settings(self.recipe, {} if self.model is None else {"model": self.model})


def run_demo(out: str | Path, settings: DemoSettings | None = None, log: Log = print) -> Path:
    """Run the demo into ``out``; return ``out``."""
    from rxwgan.models import model_info

    settings = settings or DemoSettings()
    training = settings.training()
    out = Path(out)
    started = time.perf_counter()
    table_path = out / "data" / "table.csv"
    if table_path.is_file():
        log(f"[1/7] phantom data already in {table_path.parent}")
    else:
        write_demo_data(out / "data", n_images=settings.images, size=settings.image_size)
        log(f"[1/7] wrote {settings.images} phantom X-rays and their table to {table_path}")

    table = read_table(table_path)
    size = model_info(training["model"]).image_size
    start = time.perf_counter()
    ImageCache().load_rows(table, size)
    log(f"[2/7] {len(table)} images decoded to {size}px in the cache ({time.perf_counter() - start:.1f} s)")

    split = TrainConfig.default("split")
    log(f"[3/7] {split.n_splits}-fold split (seed {split.seed}), as the old tool made it:")
    targets = table.targets
    for fold in range(split.n_splits):
        parts = partition(targets, dataclasses.replace(split, fold=fold))
        train_counts, val_counts = Counter(targets[parts.train]), Counter(targets[parts.val])
        log(f"      fold {fold}: train {len(parts.train)} (TB {train_counts[1]}), "
            f"val {len(parts.val)} (TB {val_counts[1]})")

    common = dict(input=str(table_path), augment=settings.augment, save_for_each=10**6, disp_for_each=50,
                  progress=False, **training)
    if settings.conditional:
        config = TrainConfig(output=str(out / split.name / CONDITIONAL_RUN), conditional=True,
                             kimg=2 * settings.kimg, **common)
        log(f"[4/7] training one conditional generator for both classes on {split.name} "
            f"({2 * settings.kimg:g} kimg, as many images as two runs of {settings.kimg:g}): {config.output}")
        _train_conditional(config, log)
        by_target = {target: config for target in TARGETS}
    else:
        configs = [TrainConfig(output=str(out / split.name / class_run(target)), target=target,
                               kimg=settings.kimg, **common) for target in TARGETS]
        log(f"[4/7] training both generators on {split.name} at once ({settings.kimg:g} kimg each): "
            f"{configs[0].output} and {configs[1].output}")
        _train_side_by_side(configs, log)
        by_target = {config.target: config for config in configs}

    from rxwgan.report.render import write_report

    results = {target: _synthesise_and_score(out, config, target, settings, log)
               for target, config in by_target.items()}
    utility = _utility(out, settings, log)
    report = write_report(out, out / REPORT_FOLDER, log=log)
    log(f"[7/7] report: {report.html} (and {report.markdown.name})")
    for target, (grid, c2st, n) in results.items():
        log(f"target {target}: samples {grid}; two-sample test accuracy {c2st:.3f} on {n} real vs {n} "
            f"synthetic (0.5: indistinguishable)")
    summary = utility.folder / UTILITY_SUMMARY_MARKDOWN
    log(f"does the synthetic data help? ({summary})")
    blocks = summary.read_text().split("\n\n")[:3 if utility.headline else 2]  # headline, table, comparisons
    for line in "\n".join(blocks).splitlines():
        log(f"  {line}")
    log(f"demo finished in {time.perf_counter() - started:.0f} s")
    return out


def _utility(out: Path, settings: DemoSettings, log: Log):
    """``rxwgan utility`` on the demo's fold, short: the classifier with and without synthetic data."""
    from rxwgan.utility.driver import run_utility
    from rxwgan.utility.settings import CONDITIONAL, PER_CLASS, ClassifierSettings, UtilitySettings
    from rxwgan.utility.workers import UtilityOptions

    utility_settings = UtilitySettings(repeats=settings.utility_repeats, control=("swapped",),
                                       classifier=ClassifierSettings(max_epochs=settings.utility_epochs))
    log(f"[6/7] a TB classifier on the fold's real rows, with and without the synthetic images "
        f"(rxwgan utility, {settings.utility_repeats} seeds)")
    return run_utility(out, utility_settings, UtilityOptions(local=True),
                       log=lambda line: log(f"      {line}"),
                       runs=CONDITIONAL if settings.conditional else PER_CLASS)


def _train_side_by_side(configs: list[TrainConfig], log: Log) -> None:
    """One process and one core per class when the machine has two, else one after another."""
    from rxwgan.train.loop import train

    if (os.cpu_count() or 1) < 2:
        for config in configs:
            train(config, log=log)
        return
    with local_pool(len(configs)) as pool:
        for done in [pool.submit(_train_one, config) for config in configs]:
            for line in done.result():
                log(line)


def _train_conditional(config: TrainConfig, log: Log) -> None:
    """The one run, in this process on every core; its last epoch's line and the last line."""
    from rxwgan.train.loop import train

    lines: list[str] = []
    train(config, log=lines.append)
    for line in lines[-2:]:
        log(f"      {line}")


def _train_one(config: TrainConfig) -> list[str]:
    import torch

    from rxwgan.train.loop import train

    torch.set_num_threads(1)
    lines: list[str] = []
    train(config, log=lines.append)
    return [f"      target {config.target}: {line}" for line in lines[-2:]]  # the last epoch, and done


def _synthesise_and_score(out: Path, config: TrainConfig, target: int, settings: DemoSettings,
                          log: Log) -> tuple[Path, float, int]:
    """Generate the class's synthetic set (with its memorisation check and CARD.md) and evaluate
    it: against the fold's validation rows (``evaluation.json``, as ``rxwgan evaluate`` writes),
    and with the two-sample test against every real phantom of the class (the validation rows
    alone are too few for it).

    Returns (a grid of 25 synthetic images, the test's accuracy, images per side).
    """
    import torch

    from rxwgan.base import atomic
    from rxwgan.base.plots import save_grid
    from rxwgan.metrics import compute_metrics
    from rxwgan.models import model_info
    from rxwgan.synth.generate import generate
    from rxwgan.synth.memorisation import summary_line

    size = model_info(config.model).image_size
    folder = out / f"synthetic_target_{target}"
    result = generate(Path(config.output) / "generator_trained", settings.synthetic, folder, target=target,
                      progress=False, check_memorisation=True)
    fake = torch.from_numpy(ImageCache().load(
        [folder / path for path in read_table(result.table).frame["raw_image_path"]], size, progress=False))
    validation = compute_metrics(config.input, fake, ["hist"], size=size, split=config.split,
                                 partition="val", target=target)
    atomic.write_json(folder / EVALUATION_RECORD, validation)
    table = read_table(config.input)
    real = torch.from_numpy(ImageCache().load_rows(table, size, progress=False))[
        torch.from_numpy(table.targets == target)]
    scores = compute_metrics(real, fake, ["c2st"], size=size)
    log(f"[5/7] target {target}: {result.n} synthetic images in {result.table}; against the "
        f"{validation['n_real']} validation phantoms: kl_rf {validation['kl_rf']:.3f} (real vs real "
        f"{validation['kl_rr']:.3f}), written to {folder / EVALUATION_RECORD}")
    log(f"      target {target}: {summary_line(result.memorisation)}; closest pairs "
        f"{result.memorisation['pairs']}; card {result.card}")
    grid = folder / SYNTHETIC_GRID
    save_grid(fake[:25], grid)
    return grid, float(scores["c2st_accuracy"]), int(scores["c2st_n"])
