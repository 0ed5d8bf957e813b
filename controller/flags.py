"""How a setting is given on the command line: one ``Option`` per setting, declared once.

A ``Settings`` field carries its ``Option`` in its metadata (``option(...)``): the flag, the
environment variable, the help and the parse function. ``cli`` builds the argparse flags of each
command from these declarations and the ``Settings`` from the flags and the environment, so the
default lives only in the dataclass: a flag that is not given (and whose variable is not set) leaves
the field at its default, and the help shows that same default.

Flags are kept as text by argparse and parsed here, after parsing the command line, so that a bad
value from a flag *or* from the environment ends the same way: ``ArgumentTypeError`` with one line
naming the flag (``--max-body-bytes: expected a positive integer, got 'abc'``), which ``cli`` prints
and exits 2 with.
"""

from __future__ import annotations

import math
from argparse import ArgumentTypeError
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

OPTION: Final = "option"  # the key of a dataclass field's metadata that holds its Option
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("text", "json")


@dataclass(frozen=True)
class Option:
    """One setting as the command line takes it.

    ``flag`` None: environment only (secrets stay out of the process list). ``commands`` None: every
    command takes it (``--log-level``). ``into``: the fields a parsed tuple is spread into (``--listen``
    fills the host and the port). ``command_defaults``: a command whose default deliberately differs
    from the dataclass's (the operator has no default Cattle).
    """

    flag: str | None
    env: str
    help: str
    parse: Callable[[str], Any]
    commands: frozenset[str] | None = frozenset({"run", "operator"})
    metavar: str | None = None
    into: tuple[str, ...] = ()
    command_defaults: Mapping[str, Any] = field(default_factory=dict)
    show: Callable[[Any], str] | None = None  # the default as the help shows it

    @property
    def name(self) -> str:
        """How an error names the option: its flag, else its variable."""
        return self.flag or self.env

    def takes(self, command: str) -> bool:
        return self.commands is None or command in self.commands

    def value(self, given: str | None, environ: Mapping[str, str]) -> tuple[bool, Any]:
        """``(True, value)`` from the flag, else from the environment; ``(False, None)`` when neither
        is there. A bad value: ``ArgumentTypeError`` naming the flag (and the variable it came from)."""
        if given is not None:
            text, where = given, self.name
        elif self.env in environ:
            text = environ[self.env]
            where = self.env if self.flag is None else f"{self.flag} (from {self.env})"
        else:
            return False, None
        try:
            return True, self.parse(text)
        except ArgumentTypeError as e:
            raise ArgumentTypeError(f"{where}: {e}") from None

    def describe_default(self, default: Any) -> str:
        if self.show is not None:
            return self.show(default)
        if default is None or default == "":
            return "none"
        if isinstance(default, float):
            return f"{default:g}"
        return str(default)


def option(
    flag: str | None,
    env: str,
    parse: Callable[[str], Any],
    help: str,
    **kwargs: Any,
) -> dict[str, Option]:
    """The metadata of a dataclass field given on the command line."""
    return {OPTION: Option(flag, env, help, parse, **kwargs)}


def text(value: str) -> str:
    return value


def optional_text(value: str) -> str | None:
    """Empty means not set (an empty ``CATTLE_ACCESS_KEY`` is no key)."""
    return value or None


def path(value: str) -> Path:
    if not value:
        raise ArgumentTypeError("expected a path, got ''")
    return Path(value)


def optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def show_listen(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _integer(value: str, *, least: int, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = least - 1
    if number < least:
        raise ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def positive_int(value: str) -> int:
    return _integer(value, least=1, what="a positive integer")


def non_negative_int(value: str) -> int:
    return _integer(value, least=0, what="an integer, 0 or more")


def _number(value: str, ok: Callable[[float], bool], what: str) -> float:
    """``value`` as a float that ``ok`` accepts (nan and text never pass), else one line saying ``what``."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if math.isnan(number) or not ok(number):
        raise ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def positive_seconds(value: str) -> float:
    """A duration in seconds, finite and above 0 (a 0 timeout or interval would spin or close at once)."""
    return _number(value, lambda s: math.isfinite(s) and s > 0, "a number of seconds above 0")


def share(value: str) -> float:
    return _number(value, lambda n: 0 <= n <= 1, "a share from 0 to 1")


def days_at_least(seconds: float) -> Callable[[str], float]:
    """A parser of days, fractions allowed (tests and soaks use minutes), down to ``seconds``."""
    least = math.ceil(seconds / 86400 * 1e4) / 1e4

    def days(value: str) -> float:
        return _number(
            value,
            lambda d: math.isfinite(d) and d * 86400 >= seconds,
            f"a number of days, at least {least:g} ({seconds:g} s)",
        )

    return days


def log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def log_format(value: str) -> str:
    name = value.lower()
    if name not in LOG_FORMATS:
        raise ArgumentTypeError(f"expected one of {', '.join(LOG_FORMATS)}, got {value!r}")
    return name
