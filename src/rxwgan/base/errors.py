"""The one exception type for problems a user can cause (bad table, bad flag, bad file)."""

from __future__ import annotations


class RxwganError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with status 2."""


def first_line(exc: BaseException) -> str:
    """A library's error reduced to its first line (its class name when it says nothing)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def require_at_least(flag: str, value: int, minimum: int, why: str = "") -> None:
    """Refuse ``value`` below ``minimum``, naming the flag (and ``why``, when the reason is not obvious)."""
    if value < minimum:
        reason = f" ({why})" if why else ""
        raise RxwganError(f"{flag} must be at least {minimum}{reason}, not {value}")
