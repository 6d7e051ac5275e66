"""Target profiles: strict typed loading with errors naming file, line, key and valid choices."""

from __future__ import annotations

import pytest

from conftest import ROOT, write_profile
from edgepack.errors import ProfileError
from edgepack.profiles import Profile, known_targets, load_profile


def test_rpi4_profile_loads_typed_values():
    p = load_profile("rpi4")
    assert isinstance(p, Profile)
    assert p.name == "rpi4"
    assert p.hardware.cores == 4 and p.hardware.clock_mhz == 1500
    assert p.runtime.threads == 4 and p.runtime.formats == ("tflite",)
    assert p.pruning.ratio == pytest.approx(0.3)
    assert p.quantization.weights == "per-channel"
    assert p.source.endswith("targets/rpi4.toml")
    with pytest.raises(AttributeError):
        p.name = "other"  # frozen


def test_unknown_target_lists_known():
    with pytest.raises(ProfileError) as e:
        load_profile("rpi3")
    assert str(e.value) == f"unknown target 'rpi3'; known: {', '.join(known_targets())} (or give a path to a .toml profile)"
    assert "rpi4" in known_targets()


def test_profile_by_path_and_search_path(tmp_path, monkeypatch):
    path = write_profile(tmp_path / "board.toml", **{"name": '"board"', "pruning.ratio": "0.5"})
    assert load_profile(str(path)).pruning.ratio == 0.5
    monkeypatch.setenv("EDGEPACK_TARGET_PATH", str(tmp_path))
    assert "board" in known_targets()
    assert load_profile("board").name == "board"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"pruning.ratio": "1.5"}, ":19: pruning.ratio: 1.5 is out of range; expected >= 0.0 and < 1.0"),
        ({"pruning.ratio": '"0.3"'}, ":19: pruning.ratio: expected float, got str '0.3'"),
        ({"hardware.cores": "0"}, ":9: hardware.cores: 0 is out of range; expected >= 1"),
        ({"hardware.cores": "true"}, ":9: hardware.cores: expected int, got bool True"),
        ({"hardware.cores": "2.5"}, ":9: hardware.cores: expected int, got float 2.5"),
        ({"quantization.weights": '"per-layer"'},
         ":27: quantization.weights: 'per-layer' is not allowed; choose one of: 'per-channel', 'per-tensor'"),
        ({"runtime.formats": '["tflite", "onnx"]'},
         ":16: runtime.formats: 'onnx' is not allowed; choose one of: 'tflite'"),
        ({"runtime.formats": "[]"}, ":16: runtime.formats: expected a non-empty list, got []"),
        ({"pruning.distill_alpha": "1.2"}, ":23: pruning.distill_alpha: 1.2 is out of range; expected >= 0.0 and <= 1.0"),
        ({"name": '""'}, ":4: name: must not be empty"),
    ],
)
def test_malformed_values(tmp_path, overrides, message):
    path = write_profile(tmp_path / "bad.toml", **overrides)
    with pytest.raises(ProfileError) as e:
        load_profile(str(path))
    assert str(e.value) == f"{path}{message}"


def test_unknown_key_names_valid_keys(tmp_path):
    text = (ROOT / "targets" / "rpi4.toml").read_text().replace("recovery_epochs = 8", "recovery_epoch = 8")
    path = tmp_path / "typo.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as e:
        load_profile(str(path))
    assert str(e.value) == (
        f"{path}:21: pruning.recovery_epoch: unknown key; valid keys here: channel_multiple, distill_alpha, "
        "distill_temperature, learning_rate, ratio, recovery_epochs"
    )


def test_missing_section_and_bad_toml(tmp_path):
    text = (ROOT / "targets" / "rpi4.toml").read_text()
    start = text.index("[budgets]")
    path = tmp_path / "nobudget.toml"
    path.write_text(text[:start] + text[text.index("[measure]"):])
    with pytest.raises(ProfileError, match=r"nobudget.toml: missing \[budgets\]"):
        load_profile(str(path))
    broken = tmp_path / "broken.toml"
    broken.write_text("name = 'x\n")
    with pytest.raises(ProfileError, match=r"broken.toml: not valid TOML: "):
        load_profile(str(broken))
    with pytest.raises(ProfileError, match=r"profile file '.*nothere.toml' does not exist"):
        load_profile(str(tmp_path / "nothere.toml"))


def test_missing_key_inside_section_points_at_section(tmp_path):
    text = (ROOT / "targets" / "rpi4.toml").read_text().replace("runs = 200\n", "")
    path = tmp_path / "noruns.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as e:
        load_profile(str(path))
    assert str(e.value) == f"{path}:33: measure: missing 'runs' (timed runs)"
