"""Optional dependencies: a command that needs one says which extra installs it.

Plain training needs neither Ray (``rxwgan sweep``) nor ONNX (``rxwgan export``), so they
are extras of the package rather than requirements; asking for one that is missing is a
user error, one line naming the ``pip install`` that cures it.
"""

from __future__ import annotations

import importlib.util

from rxwgan.base.errors import RxwganError


def require(packages: tuple[str, ...], extra: str, needed_for: str) -> None:
    """Refuse ``needed_for`` unless every one of ``packages`` is installed (nothing is imported)."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise RxwganError(f"{needed_for} needs {' and '.join(missing)}, not installed here: "
                          f"pip install 'rxwgan[{extra}]'")
