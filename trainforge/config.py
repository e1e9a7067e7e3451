"""Frozen, validated generator configurations and their ``KEY=VALUE`` boundary.

Every generator has one frozen dataclass, a subclass of :class:`GeneratorConfig`, read alike by
the RTL generator, the golden model, the testbench and the scheduler. Range checks live in the
dataclass's ``validate``; type coercion of strings from the command line or a file goes through
pydantic, so ``lanes=4`` and ``lanes="4"`` give the same object and ``lanes="four"`` an error
naming the field.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any, Self

import pydantic

from trainforge.errors import ConfigError, UsageError

__all__ = ["GeneratorConfig", "parse_overrides"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """Base class of generator configurations: frozen, keyword-only, validated on creation."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~trainforge.errors.ConfigError` naming any invalid field."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Build a configuration from loosely typed values (strings from a CLI or a file).

        Raises
        ------
        trainforge.errors.ConfigError
            A key is not a field, a value has the wrong type, or a range check fails.
        """
        names = cls.field_names()
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"unknown parameter {unknown[0]!r} for {cls.__name__}; valid: {', '.join(names)}")
        try:
            return pydantic.TypeAdapter(cls).validate_python(dict(values))
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or cls.__name__
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, ConfigError):
                raise cause from None
            raise ConfigError(f"{field}={err.get('input')!r}: {err['msg']}") from None

    def replace(self, **changes: Any) -> Self:
        """Return a copy with ``changes`` applied and validated."""
        return self.from_mapping({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_mapping(json.loads(text))


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """Parse ``["lanes=4", "fmt=fp16"]`` into a dict; a malformed item is a :class:`UsageError`."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, not {item!r}")
        if key in result:
            raise UsageError(f"parameter {key!r} is set twice")
        result[key] = value.strip()
    return result
