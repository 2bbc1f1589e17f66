"""Typed readers for environment variables.

Every reader raises ConfigError naming the variable, so a bad deployment stops at start-up with
one line an operator can act on instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from polymm.service.startup import StartupError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(StartupError, ValueError):
    """A configuration value is missing or malformed; the message names the variable."""

    label = "config error"


class Env:
    """Reads typed values from a mapping (os.environ by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self._env.get(name)
        return None if value is None else value.strip()

    def str(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"{name} is required but not set")
            return default
        return value

    def int(self, name: str, default: int, *, low: int | None = None, high: int | None = None) -> int:
        value = self.raw(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not an integer") from None
        _check_range(name, number, low, high)
        return number

    def float(
        self, name: str, default: float, *, low: float | None = None, high: float | None = None
    ) -> float:
        value = self.raw(name)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a number") from None
        if number != number:  # NaN passes every comparison, so refuse it explicitly
            raise ConfigError(f"{name}={value!r} is not a number")
        _check_range(name, number, low, high)
        return number

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False if lowered else default
        raise ConfigError(f"{name}={value!r} is not a boolean (use true or false)")

    def list(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"{name} is required but not set")
            return list(default)
        items = [item.strip() for item in value.split(",")]
        if any(not item for item in items):
            raise ConfigError(f"{name}={value!r} has an empty item")
        return items

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(name, default).lower()
        if value not in choices:
            raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value

    def readable_file(self, name: str, default: str) -> Path:
        path = Path(self.str(name, default))
        if not path.is_file():
            raise ConfigError(f"{name}={str(path)!r}: file not found")
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{name}={str(path)!r}: cannot read ({exc.strerror})") from None
        return path


def _check_range(name: str, number: float, low: float | None, high: float | None) -> None:
    if low is not None and number < low:
        raise ConfigError(f"{name}={number} is below the minimum {low}")
    if high is not None and number > high:
        raise ConfigError(f"{name}={number} is above the maximum {high}")
