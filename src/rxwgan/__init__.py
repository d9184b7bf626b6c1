"""rxwgan: WGAN-GP on chest X-rays under cross-validation.

The pipeline, one module per step: ``table`` -> ``images``/``cache`` -> ``splits``
-> ``models`` -> ``training`` -> ``metrics`` -> ``generate``/``export`` -> ``sweep``
-> ``report``. Each is usable from Python; ``rxwgan.cli`` is a thin layer over them.
"""

__version__ = "0.1.0"
