"""Named training recipes: an architecture and the optimiser settings measured (or published) for it.

``rxwgan train`` and ``rxwgan sweep`` pick one when the command names none (``choose``): the
old tool's when the run starts from -g/-c files (so those commands compute what they always
did), else ``cpu`` on a CPU and ``gpu`` on a GPU. Flags typed on the command line win over the
recipe, and a run that resumes takes every setting its checkpoint recorded, whatever the
defaults became since. ``TrainConfig``'s own defaults stay the old tool's: notebooks, the
old entry points and recorded configs compute exactly what they computed before recipes.

Why these (``make bench``: ``quality``, ``recipes``):
- ``cpu``: the demo's. On two CPU cores it took the ``small`` model's two-sample test to 0.83
  in 150 s, where the old tool's recipe on the same model still scored 0.99 after 220 s; the
  ResNet at 128 px is too slow there to learn in minutes.
- ``gpu``: the ResNet at 128 px with the settings Gulrajani et al. (2017) published for it
  (Adam 2e-4, betas (0, 0.9), five critic steps, batches of 64). No GPU has measured it here.
- ``keras``: the old tool's run_wgangp.py (v1, Adam 1e-4, betas (0.5, 0.9), five critic steps,
  batches of 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rxwgan.base.errors import RxwganError
from rxwgan.base.json_files import read_json
from rxwgan.base.layout import CHECKPOINT_POINTER, CONFIG_FILE
from rxwgan.train.config import KERAS_MODEL, TrainConfig

# The settings a recipe decides; every other setting keeps TrainConfig's default.
RECIPE_FIELDS = ("model", "batch_size", "n_critic", "lr", "betas", "dropout")


@dataclass(frozen=True)
class Recipe:
    model: str
    batch_size: int
    n_critic: int
    lr: float
    betas: tuple[float, float]
    dropout: float | None  # None: the architecture's own (the ResNet has no dropout)

    def settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RECIPE_FIELDS}


RECIPES = {
    "cpu": Recipe("small", 32, 1, 5e-4, (0.0, 0.9), 0.0),  # learns in minutes on a CPU (the demo's)
    "gpu": Recipe("resnet128", 64, 5, 2e-4, (0.0, 0.9), None),  # the ResNet paper's settings
    # The old tool's run_wgangp.py: TrainConfig's own defaults, named.
    "keras": Recipe(KERAS_MODEL, *(TrainConfig.default(name) for name in ("batch_size", "n_critic", "lr",
                                                                         "betas")), None),
}


def choose(given: dict[str, Any], device_type: str) -> str:
    """The recipe a command without --recipe gets: the old tool's from -g/-c, else by device."""
    if given.get("generator") or given.get("critic"):
        return "keras"
    return "gpu" if device_type == "cuda" else "cpu"


def recipe_settings(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (the settings typed) over recipe ``name``'s; -g/-c files decide the model, and
    a recipe's dropout goes only to an architecture that has dropout."""
    from rxwgan.models.registry import hparam_defaults

    if name not in RECIPES:
        raise RxwganError(f"--recipe must be one of {', '.join(RECIPES)}, not {name!r}")
    settings = {**RECIPES[name].settings(), **given, "recipe": name}
    if given.get("generator") and "model" not in given:
        settings.pop("model")
    if "dropout" not in given and (given.get("generator") or
                                   "dropout" not in hparam_defaults(settings["model"], "generator")):
        settings["dropout"] = None
    return settings


def resolved_settings(given: dict[str, Any], device_type: str,
                      recorded: TrainConfig | None) -> tuple[dict[str, Any], str]:
    """The settings a command runs with, and one line saying where they came from.

    ``recorded``: the config of the run the command resumes (None for a fresh run): its
    settings, not today's recipe, fill what the command leaves out.
    """
    if recorded is not None and "recipe" not in given:
        kept = {name: getattr(recorded, name) for name in (*RECIPE_FIELDS, "recipe")}
        settings = {**kept, **given}
        return settings, (f"resuming with the settings the run recorded ({_summary(settings)})")
    name = given.get("recipe") or choose(given, device_type)
    settings = recipe_settings(name, given)
    why = "as asked" if "recipe" in given else (
        "from -g/-c" if name == "keras" else f"the default on a {'GPU' if name == 'gpu' else 'CPU'}")
    others = ", ".join(other for other in RECIPES if other != name)
    return settings, f"recipe {name} ({why}; --recipe {others} for the others): {_summary(settings)}"


def _summary(settings: dict[str, Any]) -> str:
    model = settings.get("model") or "the -g/-c architecture"
    betas = settings["betas"]
    return (f"{model}, batches of {settings['batch_size']}, {settings['n_critic']} critic step(s) per "
            f"generator step, Adam {settings['lr']:g} betas ({betas[0]:g}, {betas[1]:g})")


def recipe_config(name: str, **values: Any) -> TrainConfig:
    """A TrainConfig of recipe ``name`` (the Python face of ``--recipe``): ``values`` win."""
    return TrainConfig(**recipe_settings(name, values))


def resumed_run(given: dict[str, Any]) -> TrainConfig | None:
    """The recorded config of the run a command would resume in its -o folder (None for a fresh
    start, --overwrite or the old tool's restart)."""
    folder = Path(given["output"])
    if given.get("overwrite") or given.get("start_from_epoch", 1) > 1:
        return None
    if not (folder / CHECKPOINT_POINTER).is_file():
        return None
    recorded = read_json(folder / CONFIG_FILE).get("config")
    return TrainConfig.from_dict(recorded) if isinstance(recorded, dict) else None
