"""rxwgan: WGAN-GP on chest X-rays under cross-validation.

The package is laid out as its pipeline, one subpackage (a *wing*) per stage, listed in
``WINGS`` from the bottom up: ``data`` (the table, images, folds) -> ``models`` ->
``metrics`` -> ``train`` (one run) -> ``synth`` (synthetic sets) -> ``study`` (all runs
of a study, on Ray) -> ``utility`` (does the synthetic data help a classifier?) ->
``report``, with ``base`` (shared plumbing) underneath and ``demo`` and ``cli`` on top.
A wing imports only itself and the wings before it, so each is usable from Python
without anything above it; ``rxwgan.cli`` only parses flags and calls them.
"""

__version__ = "0.1.0"

# Bottom to top: each may import only those before it (tests/test_house.py holds it to that).
WINGS = ("base", "data", "models", "metrics", "train", "synth", "study", "utility", "report", "demo", "cli")
