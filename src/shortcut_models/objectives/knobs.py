"""Knobs: the settings of an objective that a run configures and a checkpoint records.

A knob is a dataclass field made by :func:`knob`: its default, its allowed values (a spec of
:mod:`shortcut_models.validation`, checked when the objective is built) and what it means (the line
`shortcut config` prints for it). The recipe (:class:`~.recipe.Recipe`) and each method's own fields
are knobs; the configuration sets them flat, by name (``objective_args``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


def knob(default: Any, spec: Callable[[str, Any], Any], meaning: str) -> Any:
    """A knob: its default, its allowed values (``spec``, checked when the objective is built;
    ``spec.describe()`` says them in words) and what it means (shown by `shortcut config`)."""
    return dataclasses.field(default=default, metadata={"spec": spec, "meaning": meaning})


def check_knobs(settings: Any, names: tuple[str, ...]) -> None:
    """The range check of each knob ``names`` of the dataclass ``settings`` (ValueError naming the knob)."""
    for f in dataclasses.fields(settings):
        if f.name in names:
            f.metadata["spec"](f.name, getattr(settings, f.name))


def knob_fields(cls: type) -> tuple[str, ...]:
    """The names of the knobs (fields made by :func:`knob`) of the dataclass ``cls``, in field order."""
    return tuple(f.name for f in dataclasses.fields(cls) if "spec" in f.metadata)


def knob_docs(cls: type, names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Each knob ``names`` of the dataclass ``cls`` -> (what it means, its allowed values in words)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return {n: (fields[n].metadata["meaning"], fields[n].metadata["spec"].describe()) for n in names}
