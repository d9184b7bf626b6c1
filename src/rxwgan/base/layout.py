"""Every file name rxwgan writes, and the training history's keys: one contract, stated once.

A run folder, a study and a synthetic set are written by one process and read by others
(``sweep --status``, ``report``, ``utility``, ``generate``, a resumed run) and by users'
notebooks, which read ``history.json`` by the old tool's keys. Writers and readers import
these names from here; nothing else spells them.
"""

from __future__ import annotations

LOCK_FILE = ".rxwgan.lock"  # held while a process writes a folder (``base.folder_lock``)

# --- a training run's folder --------------------------------------------------------------
CONFIG_FILE = "config.json"
SPLIT_FILE = "split.csv"
PARTITION_COLUMN = "partition"  # split.csv's column: train, val or test
HISTORY_FILE = "history.json"
CURVES_FILE = "loss_curves.png"
TENSORBOARD_FOLDER = "tensorboard"
MANIFEST_FILE = "run_files.json"  # the files this run made: --overwrite deletes only those
CHECKPOINT_FOLDER = "checkpoints"
CHECKPOINT_POINTER = "checkpoint.json"  # which checkpoint is the latest, with its checksum
RUN_SPACE_RECORD = "eval_space.json"  # the id of the feature space a run's numbers came from
TRAINED_GENERATOR = "generator_trained.safetensors"
TRAINED_CRITIC = "critic_trained.safetensors"
BEST_GENERATOR = "generator_best.safetensors"  # lowest validation KID so far
BEST_RECORD = "best.json"
FINAL_FILES = (TRAINED_GENERATOR, TRAINED_CRITIC)  # written once, when the run ends
BEST_FILES = (BEST_GENERATOR, BEST_RECORD)
STATUS_FILE = "status.json"  # a study's run: what the sweep last knew of it
WORKER_FILE = "worker.json"  # a study's run: the process training it


def epoch_files(epoch: int) -> tuple[str, str, str]:
    """The old tool's every-``--save_for_each`` files: what ``-g/-c/--history`` restart from."""
    return (f"generator_epoch_{epoch}.safetensors", f"critic_epoch_{epoch}.safetensors",
            f"history_epoch_{epoch}.json")


def grid_file(epoch: int) -> str:
    return f"fake_samples_epoch_{epoch}.png"


# Every name a run writes, as glob patterns: how a run made before manifests is recognised
# (the old tool's epoch files and .h5 models included).
RUN_FILE_PATTERNS = (CONFIG_FILE, CHECKPOINT_POINTER, HISTORY_FILE, epoch_files("*")[2], "generator_epoch_*",
                     "critic_epoch_*", "generator_trained*", "critic_trained*", grid_file("*"), CURVES_FILE,
                     SPLIT_FILE, f"{CHECKPOINT_FOLDER}/*.pt")


# --- history.json: the old tool's keys, one value per epoch ---------------------------------
LOSS_KEYS = ("critic_loss", "gen_loss", "reg_loss")
# The old tool's image divergences, in its order: kl_rr, kl_rf, js_rr, ... (rr: real against
# real, rf: real against fake).
DIVERGENCE_KEYS = tuple(f"{metric}_{pair}" for metric in ("kl", "js", "l1", "l2") for pair in ("rr", "rf"))
HISTORY_KEYS = ([f"train_{key}" for key in LOSS_KEYS]
                + [f"train_{k}" for k in DIVERGENCE_KEYS]
                + ["val_critic_loss", "val_gen_loss"]
                + [f"val_{k}" for k in DIVERGENCE_KEYS])

# --- a study folder -----------------------------------------------------------------------
CONDITIONAL_RUN = "conditional"  # a split's one conditional run: <split>/conditional/


def class_run(target: int) -> str:
    """A split's per-class run folder: <split>/target_<t>/."""
    return f"target_{target}"


SWEEP_FILE = "sweep.json"
STUDY_SPACE_FILE = "eval_space.safetensors"  # the study's one fitted feature space
UTILITY_FOLDER = "utility"
UTILITY_SETTINGS = "utility.json"
UTILITY_TABLE = "utility.csv"
UTILITY_SUMMARY = "summary.csv"
UTILITY_SUMMARY_MARKDOWN = "summary.md"
UTILITY_ROC = "roc.png"
UTILITY_RUNS_FOLDER = "runs"
UTILITY_TWO_SAMPLE = "two_sample.json"  # in a fold's key folder: each class's two-sample test
UTILITY_RESULTS_PATTERN = f"{UTILITY_RUNS_FOLDER}/*/*/*.json"


def utility_result(split: str, key: str, condition: str, ratio: float, seed: int) -> str:
    """One classifier run's result file, relative to the study's utility folder: ``key`` names
    what the result depends on (settings and generators), so results of others sit beside it."""
    return f"{UTILITY_RUNS_FOLDER}/{split}/{key}/{condition}_x{ratio:g}_seed{seed}.json"


REPORT_FOLDER = "report"
REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"
REPORT_RUNS = "runs.csv"
REPORT_BEST = "best.csv"
REPORT_UTILITY_ROC = "utility_roc.png"


def report_figure(kind: str, target: int | str) -> str:
    """A class's figure in the report: ``curves``, ``divergences``, ``metrics`` or ``samples``
    (``target``: a class, or CONDITIONAL_RUN for the conditional runs' section)."""
    return f"{kind}_target_{target}.png"


def report_best_grid(run: str) -> str:
    """Samples of a study's best run (``fold_0/target_1``) in the report."""
    return f"best_{run.replace('/', '_')}.png"

# --- a synthetic set ----------------------------------------------------------------------
SYNTHETIC_TABLE = "synthetic.csv"
SYNTHETIC_SETTINGS = "synthetic.json"
MIXED_TABLE = "mixed.csv"
SYNTHETIC_IMAGES = "images"
SYNTHETIC_GRID = "samples.png"
EVALUATION_RECORD = "evaluation.json"  # the demo's evaluation of a set (as ``evaluate --json`` writes)
CARD_FILE = "CARD.md"
MEMORISATION_RECORD = "memorisation.json"
MEMORISATION_PAIRS = "memorisation_pairs.png"


def memorisation_files(target: int | None = None) -> tuple[str, str]:
    """(record, pairs picture) of a memorisation check: a set's or a per-class run's (``None``),
    or one class's in a conditional run's folder, which keeps a check per class."""
    if target is None:
        return MEMORISATION_RECORD, MEMORISATION_PAIRS
    return f"memorisation_target_{target}.json", f"memorisation_pairs_target_{target}.png"
