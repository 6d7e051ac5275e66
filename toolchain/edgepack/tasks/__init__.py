"""Task kinds: what a model is for, the metric every stage judges it by, its losses and targets."""

from .kinds import KINDS, Task, parse

__all__ = ["KINDS", "Task", "parse"]
