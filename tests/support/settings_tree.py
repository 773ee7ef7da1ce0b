"""Every leaf setting of ``app.settings.Settings``: its path, the type that declares it, and its type.

Shared by ``tests/service/test_settings.py`` (each leaf can be set from the environment) and
``tests/docs/test_claims.py`` (each leaf has a test referring to it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, get_type_hints

from pydantic import BaseModel

from app.settings import Settings


def _leaves(cls: type, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], type, Any]]:
    if dataclasses.is_dataclass(cls):
        hints: dict[str, Any] = get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
    else:
        hints = {name: field.annotation for name, field in cls.model_fields.items()}  # type: ignore[attr-defined]
        names = list(hints)
    for name in names:
        kind = hints[name]
        if isinstance(kind, type) and (dataclasses.is_dataclass(kind) or issubclass(kind, BaseModel)):
            yield from _leaves(kind, (*path, name))
        else:
            yield (*path, name), cls, kind


def setting_leaves() -> list[tuple[tuple[str, ...], type, Any]]:
    """(path, owning type, type) of every leaf, e.g. (("mysql", "pool_max"), MySQLConfig, int)."""
    defaults = Settings()
    return [leaf for section in Settings.model_fields
            for leaf in _leaves(type(getattr(defaults, section)), (section,))]
