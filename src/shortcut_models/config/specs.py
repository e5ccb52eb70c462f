"""Allowed values of the configuration keys that the plain kinds of :mod:`shortcut_models.validation`
do not cover: step lists, dictionaries of settings, devices, logger back-ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..loggers import parse_backends
from ..sampling import MAX_STEPS
from ..validation import check_device, check_int


@dataclass(frozen=True)
class StepList:
    """A non-empty list of step counts from 1 to the sampler's maximum."""

    def __call__(self, name: str, value: Any) -> list:
        if not isinstance(value, list) or not value:
            raise ValueError(f"{name} must be a non-empty list of step counts, got {value!r}")
        for v in value:
            check_int(f"each of {name}", v, 1, MAX_STEPS)
        return value

    def describe(self) -> str:
        return f"a list of step counts from 1 to {MAX_STEPS}"


@dataclass(frozen=True)
class Settings:
    """A dictionary of settings (string keys), e.g. a network's constructor arguments."""

    def __call__(self, name: str, value: Any) -> dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"{name} must be a dictionary of settings, got {value!r}")
        return value

    def describe(self) -> str:
        return "a dictionary of settings"


@dataclass(frozen=True)
class Device:
    """auto, cpu, cuda or cuda:N."""

    def __call__(self, name: str, value: Any) -> str:
        return check_device(name, value)

    def describe(self) -> str:
        return "auto, cpu, cuda or cuda:N"


@dataclass(frozen=True)
class Backends:
    """Where logs go besides RUN/metrics.csv."""

    def __call__(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        parse_backends(value)
        return value

    def describe(self) -> str:
        return "none, tensorboard, wandb, or tensorboard,wandb"
