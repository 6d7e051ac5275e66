"""What several commands share: the parser class, bounded numbers, and the --model/--data/--device options.

A command-line number is held to the same rule as a profile number: finite, and within the bounds a
real device could need. Where a flag overrides a profile field, its bounds are that field's
(``profiles/sections.py``), so the two can never disagree.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from ..profiles.typed import field_spec, range_problem

MODEL_FORMS = "'demo' (default), 'zoo:NAME', 'path/to/file.py:factory' or 'path/to/model.onnx'"
DATA_METAVAR = "digits|digits-hard|FILE.npz|MANIFEST.toml|FOLDER|LABELS.csv|FILE.py:FN"
DATA_FORMS = ("'digits' (default), 'digits-hard', a FILE.npz, a data manifest, an image folder with one "
              "sub-folder per class, an annotation file (.csv/.json), or file.py:function returning datasets")
DEVICE_FORMS = "host, profile (the profile's [connection]), ssh://user@host[:port], adb[:SERIAL]"


class Parser(argparse.ArgumentParser):
    """argparse with edgepack's one-line error: what is wrong, and where the help is."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"edgepack: error: {message} (see `{self.prog} --help`)\n")


def _bounded(kind: type, spec: Mapping[str, Any]) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        problem = range_problem(value, spec)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def count(lo: int = 1, hi: int = 1_000_000) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number in [lo, hi]."""
    return _bounded(int, {"lo": lo, "hi": hi})


def number(lo: float = 0.0, hi: float = 1e6, *, lo_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number in [lo, hi] (or (lo, hi] with ``lo_open``)."""
    return _bounded(float, {"lo": lo, "hi": hi, "lo_open": lo_open})


def like_field(cls: type, name: str) -> Callable[[str], float]:
    """An argparse ``type`` with the type and bounds of profile field ``cls.name``."""
    return _bounded(*field_spec(cls, name))


def add_model(p: argparse.ArgumentParser, *, weights: bool = True) -> None:
    p.add_argument("--model", default="demo", metavar="SPEC", help=f"the model: {MODEL_FORMS}")
    if weights:
        p.add_argument("--weights", metavar="CKPT",
                       help="state_dict checkpoint for --model (loaded with weights_only=True); required for "
                            "file.py:factory")


def add_data(p: argparse.ArgumentParser, *, calibration: bool = True) -> None:
    p.add_argument("--data", default="digits", metavar=DATA_METAVAR, help=f"the data set: {DATA_FORMS}")
    if calibration:
        p.add_argument("--calibration", metavar="MANIFEST.toml",
                       help="calibration data set manifest or the name of a shipped one (default: the data set's "
                            "calibration split)")


def add_device(p: argparse.ArgumentParser, *, default: str, what: str, extra: str = "") -> None:
    p.add_argument("--device", default=default, metavar="DEVICE",
                   help=f"where {what}: {DEVICE_FORMS}{extra} (default {default})")


def add_train_device(p: argparse.ArgumentParser) -> None:
    """--train-device: where training runs; a shorthand for --set training.device=DEVICE."""
    p.add_argument("--train-device", metavar="auto|cpu|cuda[:N]|mps", type=_train_device,
                   help="where recovery, distillation, the weight methods and the zoo's training run (default: the "
                        "profile's training.device, auto: a CUDA GPU, else Apple MPS, else the CPU); the same as "
                        "--set training.device=DEVICE. The CPU is deterministic; a GPU is not (docs/design.md)")


def _train_device(text: str) -> str:
    import re

    from ..profiles.sections import TRAIN_DEVICES

    if not re.fullmatch(TRAIN_DEVICES, text.strip().lower()):
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, cpu, cuda, cuda:N or mps")
    return text.strip().lower()


def train_device_sets(args: argparse.Namespace) -> list[str]:
    """The --set overrides --train-device stands for."""
    return [f"training.device={args.train_device}"] if getattr(args, "train_device", None) else []
