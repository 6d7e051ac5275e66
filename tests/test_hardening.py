"""Hostile and malformed inputs: a one-line error with edgepack's exit status and nothing written,
never a traceback, never nonsense accepted (NaN, infinities, absurd counts and shapes, paths as
names), and inputs from other editors read as their authors meant."""

from __future__ import annotations

import math

import pytest
from edgepack.errors import ProfileError, UsageError
from edgepack.profiles.loader import load_profile, parse_override
from edgepack.profiles.sections import Profile
from helpers import ROOT, run_cli


def _one_line_error(proc, message: str, status: int = 2) -> None:
    assert proc.returncode == status, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgepack: error: ") and message in last, last
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("setting, message", [
    ("pruning.ratio=nan", "--set: pruning.ratio: nan is not a finite number"),
    ("budgets.max_latency_ms=inf", "--set: budgets.max_latency_ms: inf is not a finite number; give a number (leave "
                                   "the key out for no limit)"),
    ("measure.runs=1000000000000", "--set: measure.runs: 1000000000000 is out of range; expected >= 1 and <= 1000000"),
    ("hardware.cores=100000", "--set: hardware.cores: 100000 is out of range"),
])
def test_nonsense_numbers_are_refused_before_anything_runs(tmp_path, setting, message):
    proc = run_cli("build", "--target", "rpi4", "--set", setting, "--out", str(tmp_path / "out"))
    _one_line_error(proc, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, message", [
    ("ratio = nan", "pruning.ratio: nan is not a finite number"),
    ("ratio = -inf", "pruning.ratio: -inf is not a finite number"),
])
def test_nan_and_infinity_in_a_profile_file_are_refused(tmp_path, line, message):
    prof = tmp_path / "mine.toml"
    prof.write_text(f'extends = "rpi4"\nname = "mine"\n[pruning]\n{line}\n')
    with pytest.raises(ProfileError, match=message) as e:
        load_profile(str(prof))
    assert str(e.value).startswith(f"{prof}:4: ")


def test_every_number_in_a_profile_has_a_ceiling():
    import dataclasses
    import typing

    missing = []
    for section in dataclasses.fields(Profile):
        cls = typing.get_type_hints(Profile)[section.name]
        if not dataclasses.is_dataclass(cls):
            continue
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            args = typing.get_args(tp) or (tp,)
            if (int in args or float in args) and bool not in args and f.metadata.get("hi") is None:
                missing.append(f"{section.name}.{f.name}")
    assert not missing, f"numeric profile fields with no upper bound: {missing}"


def test_a_profile_saved_with_a_byte_order_mark_loads_as_without(tmp_path):
    text = (ROOT / "targets" / "rpi4.toml").read_text()
    plain, marked = tmp_path / "plain" / "rpi4.toml", tmp_path / "marked" / "rpi4.toml"
    for p, data in ((plain, text.encode()), (marked, b"\xef\xbb\xbf" + text.encode())):
        p.parent.mkdir()
        p.write_bytes(data)
    a, b = load_profile(str(plain)), load_profile(str(marked))
    assert a.to_dict() == b.to_dict()


def test_deeply_nested_toml_is_a_profile_error_not_a_recursion_error(tmp_path):
    prof = tmp_path / "deep.toml"
    prof.write_text("[" + ".".join(["a"] * 5000) + "]\nx = 1\n")
    with pytest.raises(ProfileError, match="nested too deeply"):
        load_profile(str(prof))
    with pytest.raises(ProfileError, match="nested too deeply"):
        parse_override("pruning.ratio=" + "[" * 5000 + "]" * 5000)


def test_an_absurd_input_shape_is_refused_without_allocating(tmp_path):
    from edgepack.api import parse_input_shape

    assert parse_input_shape("1,3,224,224") == (1, 3, 224, 224)
    with pytest.raises(UsageError, match="too large for an edge model"):
        parse_input_shape("1,3,100000,100000")
    proc = run_cli("build", "--target", "rpi4", "--input-shape", "1,3,100000,100000", "--out", str(tmp_path / "o"))
    _one_line_error(proc, "input shape '1,3,100000,100000' is too large for an edge model")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("study", ["../../../somewhere/else", "a/b", "..", "/tmp/x", ""])
def test_a_study_name_is_a_plain_name(tmp_path, study):
    proc = run_cli("tune", "--target", "rpi4", "--study", study, "--trials", "1", "--out", str(tmp_path / "tune"))
    _one_line_error(proc, "a study name is a plain name")
    assert not (tmp_path / "tune").exists() and not (tmp_path / "somewhere").exists()


def test_finite_numbers_still_load():
    p = load_profile("rpi4", ["pruning.ratio=0.45", "budgets.max_latency_ms=12.5"])
    assert p.pruning.ratio == 0.45 and math.isfinite(p.budgets.max_latency_ms)


def _number_actions():
    """Every option of every command whose value is a number: (command, flag, type)."""
    import argparse

    from edgepack.cli.main import _parser

    def walk(parser, name):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub, p in a.choices.items():
                    yield from walk(p, f"{name} {sub}".strip())
            elif a.type is not None and a.option_strings:
                yield name, a.option_strings[-1], a.type

    return list(walk(_parser(), ""))


def test_every_number_on_the_command_line_is_bounded_and_finite():
    import argparse

    numbers = [(c, f, t) for c, f, t in _number_actions() if getattr(t, "__name__", "") in ("int", "float")]
    assert len(numbers) >= 14  # bench, tune, compare, check, history and cache all take numbers
    plain = [f"{c} {f}" for c, f, t in numbers if t in (int, float)]
    assert not plain, f"options parsed as a plain int/float, unbounded: {plain}"
    for cmd, flag, parse in numbers:
        for text in ("nan", "inf", "-inf", "1e30", "-1e30"):
            with pytest.raises(argparse.ArgumentTypeError):
                parse(text)


@pytest.mark.parametrize("args, message", [
    (["bench", "--runs", "1000000000000"], "argument --runs: 1000000000000 is out of range; expected >= 1 and <= 1000000"),
    (["bench", "--threads", "100000"], "argument --threads: 100000 is out of range"),
    (["bench", "--cooldown", "nan"], "argument --cooldown: nan is not a finite number"),
    (["tune", "--target", "rpi4", "--time-budget", "inf"], "argument --time-budget: inf is not a finite number"),
    (["compare", "--target", "rpi4", "--rounds", "x"], "argument --rounds: 'x' is not a whole number"),
])
def test_nonsense_numbers_on_the_command_line_are_one_line_errors(tmp_path, args, message):
    proc = run_cli(*args, "--out", str(tmp_path / "out")) if args[0] != "bench" else run_cli(*args)
    _one_line_error(proc, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("body, message", [
    ('[preprocess]\nscale = nan\n', "preprocess.scale"),
    ('[preprocess]\nmean = [inf]\n', "preprocess.mean"),
    ('[preprocess]\nstd = [1e300]\n', "preprocess.std"),
    ('[preprocess]\nresize = [100000, 100000]\n', "preprocess.resize"),
    ('[preprocess]\nresize = [31.5, 32]\n', "preprocess.resize"),
])
def test_calibration_manifest_numbers_are_finite_and_bounded(tmp_path, body, message):
    from edgepack.data.calibration import load_calibration
    from edgepack.errors import DataError

    (tmp_path / "imgs").mkdir()
    path = tmp_path / "cal.toml"
    path.write_text('kind = "images"\npath = "imgs"\n' + body)
    with pytest.raises(DataError, match=message):
        load_calibration(path, input_shape=(1, 1, 32, 32))


@pytest.mark.parametrize("seed", ['"abc"', "-1", "4294967296", "1.5", "true"])
def test_a_data_manifest_split_seed_is_a_32_bit_whole_number(tmp_path, seed):
    from edgepack.data.loaders import load_manifest_data
    from edgepack.errors import DataError

    ROOT_DATA = ROOT / "calibration" / "digits-png"
    assert ROOT_DATA.is_dir()
    path = tmp_path / "data.toml"
    path.write_text(f'kind = "images"\npath = "{ROOT_DATA}"\n[preprocess]\nscale = 0.00392156862745098\n'
                    f'[splits]\nseed = {seed}\n')
    with pytest.raises(DataError, match=r"\[splits\] seed must be a whole number"):
        load_manifest_data(path, input_shape=(1, 1, 32, 32))
