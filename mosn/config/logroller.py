"""MOSN's log roller setting (``servers[].global_log_roller``, ``pkg/log/roller.go``):
space-separated ``key=value``: ``time=H`` (rotate every H hours, at most 24; with it
the other keys are not used, as in MOSN), ``size=MB``, ``age=DAYS``, ``keep=N``,
``compress=on|off``."""

from __future__ import annotations

from dataclasses import dataclass

MAX_ROTATE_HOURS = 24
"""MOSN's ``maxRotateHour``: ``time=`` above it is taken as 24."""
DEFAULT_ROTATE_SIZE_MB = 1000
DEFAULT_ROTATE_AGE_DAYS = 7
DEFAULT_ROTATE_KEEP = 10
"""MOSN's defaults (``DefaultRoller``) for a roller by size."""


@dataclass(frozen=True)
class Roller:
    time_hours: int = 0
    """Rotate every this many hours (0: by size)."""
    size_mb: int = DEFAULT_ROTATE_SIZE_MB
    age_days: int = DEFAULT_ROTATE_AGE_DAYS
    keep: int = DEFAULT_ROTATE_KEEP
    compress: bool = False


def parse_roller(text: str) -> Roller:
    """MOSN's roller text; ValueError with the bad part."""
    values: dict[str, int | bool] = {}
    names = {"time": "time_hours", "size": "size_mb", "age": "age_days", "keep": "keep"}
    for part in text.split(" "):
        key, sep, value = part.partition("=")
        if not sep or "=" in value:
            raise ValueError(f"{part!r}: a roller setting is key=value")
        if key == "compress":
            if value not in ("on", "off"):
                raise ValueError(f"compress={value}: on or off")
            values["compress"] = value == "on"
        elif key in names:
            if not value.isdigit():
                raise ValueError(f"{key}={value}: a whole number")
            number = int(value)
            if key == "time":
                number = min(number, MAX_ROTATE_HOURS)
                if number == 0:
                    raise ValueError("time=0: at least 1 hour")
            values[names[key]] = number
        else:
            raise ValueError(f"{key!r}: not a roller setting (time, size, age, keep, "
                             "compress)")
    return Roller(**values)  # type: ignore[arg-type]
