"""Frozen stage configurations: validation helpers, dict round trip, content keys."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any

from stages.errors import ConfigError


class StageConfig:
    """Mixin for frozen dataclasses holding one stage's parameters."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(names))}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _coerce(hints[k], v) for k, v in data.items()})

    def with_text_overrides(self, prefix: str, overrides: dict[str, str]):
        """Apply `field=value` strings (from the command line), parsed by the field's type."""
        hints = typing.get_type_hints(type(self))
        changes = {}
        for name, text in overrides.items():
            if name not in hints:
                allowed = ", ".join(f"{prefix}.{f.name}" for f in dataclasses.fields(self))
                raise ConfigError(f"--set {prefix}.{name}: unknown parameter; allowed: {allowed}")
            changes[name] = _parse_text(f"{prefix}.{name}", hints[name], text)
        return dataclasses.replace(self, **changes)


def _coerce(hint, value):
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def _parse_text(label: str, hint, text: str):
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if hint in (int, float, str):
            return hint(text)
        if origin is tuple:
            item = typing.get_args(hint)[0]
            return tuple(item(part) for part in text.replace("x", ",").split(","))
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
            return None if text.lower() == "none" else _parse_text(label, inner, text)
    except ValueError:
        pass
    raise ConfigError(f"--set {label}={text}: not a valid {getattr(hint, '__name__', hint)}")


def check(condition: bool, field: str, value, allowed: str) -> None:
    """Raise a ConfigError naming the field, its bad value and what is allowed."""
    if not condition:
        raise ConfigError(f"{field}={value!r}: {allowed}")


def canonical_json(obj: Any) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"configuration value cannot be hashed: {exc}") from exc


def stage_key(stage: str, version: int, config: dict[str, Any] | None, parent: str | None) -> str:
    """sha256 of the stage's name, version, parameters and its parent's key."""
    payload = {"stage": stage, "version": version, "config": config, "parent": parent}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
