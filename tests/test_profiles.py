"""Target profiles: strict typed loading, `extends`, provenance, and the `targets` commands."""

from __future__ import annotations

import pytest
from edgepack.errors import ProfileError
from edgepack.profiles.loader import known_targets, load_profile
from edgepack.profiles.sections import Profile
from helpers import ROOT, run_cli

SHIPPED = ["android-arm64", "cortex-m4", "cortex-m55-u55", "cortex-m7", "rpi4", "rpi5", "x86-64"]


def test_shipped_profiles_load():
    assert [t for t in known_targets() if t in SHIPPED] == SHIPPED
    for name in SHIPPED:
        p = load_profile(name)
        assert isinstance(p, Profile) and p.name == name
        assert p.is_mcu == (p.hardware.flash_kb is not None) == name.startswith("cortex-m")


def test_rpi4_profile_loads_typed_values():
    p = load_profile("rpi4")
    assert p.hardware.cores == 4 and p.hardware.clock_mhz == 1500 and p.hardware.ram_kb == 4 * 1024 * 1024
    assert p.runtime.threads == 4 and p.runtime.formats == ("tflite", "pte")
    assert p.pruning.ratio == pytest.approx(0.3) and p.pruning.keep_layers == ()
    assert p.quantization.weights == "per-channel" and p.quantization.allow_int16x8 is True
    assert p.budgets.max_energy_mj == 50.0 and p.connection.kind == "ssh" and p.connection.port == 22
    assert p.power.energy_per_mac_pj is None
    with pytest.raises(AttributeError):
        p.name = "other"  # frozen


def test_changing_a_kind_replaces_the_section(tmp_path):
    path = tmp_path / "phone-via-rpi.toml"
    path.write_text('extends = "rpi4"\n[connection]\nkind = "adb"\nserial = "R58M123"\n')
    p = load_profile(str(path))
    assert (p.connection.kind, p.connection.serial, p.connection.host, p.connection.port) == ("adb", "R58M123", None, None)
    assert p.origin_of("connection.host") == "default"


def test_extends_overrides_key_by_key_and_records_origins(tmp_path):
    rpi5 = load_profile("rpi5")
    assert rpi5.extends == "rpi4" and rpi5.hardware.cpu == "Cortex-A76" and rpi5.hardware.cores == 4
    assert rpi5.origin_of("hardware.cpu").endswith("targets/rpi5.toml")
    assert rpi5.origin_of("hardware.cores").endswith("targets/rpi4.toml")
    child = tmp_path / "board.toml"
    child.write_text('extends = "rpi5"\nname = "board"\n[pruning]\nratio = 0.5\n')
    b = load_profile(str(child))
    assert b.pruning.ratio == 0.5 and b.pruning.channel_multiple == 8 and b.hardware.clock_mhz == 2400
    assert b.origin_of("pruning.ratio") == str(child)
    assert b.origin_of("pruning.channel_multiple").endswith("rpi5.toml")
    assert b.origin_of("pruning.distill_alpha").endswith("rpi4.toml")
    assert b.origin_of("power.energy_per_mac_pj") == "default"


def test_unknown_target_lists_known():
    with pytest.raises(ProfileError) as e:
        load_profile("rpi3")
    assert str(e.value) == f"unknown target 'rpi3'; known: {', '.join(known_targets())} (or give a path to a .toml profile)"


def test_profile_search_path(tmp_path, monkeypatch):
    (tmp_path / "board.toml").write_text('extends = "rpi4"\nname = "board"\n')
    monkeypatch.setenv("EDGEPACK_TARGET_PATH", str(tmp_path))
    assert "board" in known_targets()
    assert load_profile("board").name == "board"


CHILD = 'extends = "rpi4"\n'
# (file text, expected message after "FILE:LINE: "), the line counted in the file given
MALFORMED = {
    "ratio-range": (CHILD + "[pruning]\nratio = 1.5\n", ":3: pruning.ratio: 1.5 is out of range; expected >= 0.0 and < 1.0"),
    "ratio-type": (CHILD + '[pruning]\nratio = "0.3"\n', ":3: pruning.ratio: expected float, got str '0.3'"),
    "cores-zero": (CHILD + "[hardware]\ncores = 0\n", ":3: hardware.cores: 0 is out of range; expected >= 1"),
    "cores-bool": (CHILD + "[hardware]\ncores = true\n", ":3: hardware.cores: expected int, got bool True"),
    "cores-float": (CHILD + "[hardware]\ncores = 2.5\n", ":3: hardware.cores: expected int, got float 2.5"),
    "macs-zero": (CHILD + "[hardware]\nint8_macs_per_cycle = 0\n",
                  ":3: hardware.int8_macs_per_cycle: 0.0 is out of range; expected > 0.0"),
    "weights-choice": (CHILD + '[quantization]\nweights = "per-layer"\n',
                       ":3: quantization.weights: 'per-layer' is not allowed; choose one of: 'per-channel', 'per-tensor'"),
    "int16-bool": (CHILD + '[quantization]\nallow_int16x8 = "yes"\n',
                   ":3: quantization.allow_int16x8: expected true or false, got str 'yes'"),
    "format-choice": (CHILD + '[runtime]\nformats = ["tflite", "onnx"]\n',
                      ":3: runtime.formats: 'onnx' is not allowed; choose one of: 'tflite', 'c-source', 'c-program', 'pte'"),
    "formats-empty": (CHILD + "[runtime]\nformats = []\n", ":3: runtime.formats: expected a non-empty list, got []"),
    "alpha-range": (CHILD + "[pruning]\ndistill_alpha = 1.2\n",
                    ":3: pruning.distill_alpha: 1.2 is out of range; expected >= 0.0 and <= 1.0"),
    "name-empty": ('extends = "rpi4"\nname = ""\n', ":2: name: must not be empty"),
    "unknown-key": (CHILD + "[pruning]\nrecovery_epoch = 8\n",
                    ":3: pruning.recovery_epoch: unknown key; valid keys here: accuracy_share, channel_multiple, distill_alpha, "
                    "distill_temperature, early_stop_patience, fragile_drop, importance, keep_layers, layer_ratios, "
                    "learning_rate, max_ratio, ratio, recovery, recovery_epochs, recovery_seconds, scope, steps"),
    "unknown-section": (CHILD + "[budget]\nmax_model_kb = 1\n",
                        ":2: budget: unknown key; valid keys here: budgets, ci, connection, data, description, executorch, extends, hardware, "
                        "limits, measure, name, power, pruning, quantization, runtime"),
    "section-not-table": ('extends = "rpi4"\nhardware = 3\n', ":2: hardware: expected a table [hardware], got int 3"),
    "bad-toml": ("name = 'x\n", ": not valid TOML: "),
    "extends-unknown": ('extends = "rpi3"\n', ":1: extends: unknown target 'rpi3'; known: "),
    "ratio-above-max": (CHILD + "[pruning]\nratio = 0.75\n", ":3: pruning.ratio: 0.75 is above this target's max_ratio 0.7"),
    "threads-above-cores": (CHILD + "[runtime]\nthreads = 8\n",
                            ":3: runtime.threads: 8 threads on a 4-core device; use at most 4"),
    "pte-without-backend": (CHILD + "[executorch]\nbackends = []\n",
                            ":3: executorch.backends: 'pte' is in runtime.formats but no backend is listed; add e.g. \"xnnpack\""),
    "pte-mcu-backend-on-litert": (CHILD + '[executorch]\nbackends = ["ethos-u"]\n',
                                  ":3: executorch.backends: 'ethos-u' does not run on application-processor (litert) targets; use xnnpack"),
    "pte-xnnpack-on-mcu": ('extends = "cortex-m55-u55"\n[executorch]\nbackends = ["xnnpack", "cortex-m"]\n',
                           ":3: executorch.backends: 'xnnpack' does not run on microcontroller (tflm) targets; use cortex-m or ethos-u"),
    "pte-unknown-npu": ('extends = "cortex-m55-u55"\n[executorch]\nethos_u_accelerator = "ethos-u42"\n',
                        ":3: executorch.ethos_u_accelerator: 'ethos-u42' is not allowed; choose one of: 'ethos-u55-32'"),
    "c-source-on-litert": (CHILD + '[runtime]\nformats = ["tflite", "c-source"]\n',
                           ":3: runtime.formats: 'c-source' is for tflm (microcontroller) targets; remove it or use runtime name = \"tflm\""),
    "c-program-on-litert": (CHILD + '[runtime]\nformats = ["tflite", "c-program"]\n',
                            ":3: runtime.formats: 'c-program' is for tflm (microcontroller) targets; remove it or use runtime name = \"tflm\""),
    "tflm-threads": ('extends = "cortex-m4"\n[runtime]\nthreads = 2\n',
                     ":3: runtime.threads: 2: TensorFlow Lite Micro runs on one thread; use 1"),
    "adb-with-host": (CHILD + '[connection]\nkind = "adb"\nhost = "pi"\n',
                      ":4: connection.host: does not apply to kind = \"adb\"; it is for ssh"),
    "ssh-without-host": ('extends = "android-arm64"\n[connection]\nkind = "ssh"\n',
                         ":2: connection: missing 'host', needed when kind = \"ssh\""),
    "port-range": (CHILD + "[connection]\nport = 70000\n", ":3: connection.port: 70000 is out of range; expected >= 1 and <= 65535"),
    "power-order": (CHILD + "[power]\nactive_mw = 100\n", ":3: power.active_mw: 100.0 is below idle_mw 2700.0"),
    "layer-ratios-type": (CHILD + '[pruning]\nlayer_ratios = ["stem.0"]\n',
                          ":3: pruning.layer_ratios: expected a table of name = number, got list ['stem.0']"),
    "layer-ratio-range": (CHILD + '[pruning.layer_ratios]\n"head.0" = 1.0\n',
                          ":3: pruning.layer_ratios.head.0: 1.0 is out of range; expected >= 0.0 and < 1.0"),
    "recovery-choice": (CHILD + '[pruning]\nrecovery = "magic"\n',
                        ":3: pruning.recovery: 'magic' is not allowed; choose one of: 'distill', 'distill-unlabelled', "
                        "'finetune', 'bn-reestimate', 'none'"),
    "budget-negative": (CHILD + "[budgets]\nmax_model_kb = -5\n", ":3: budgets.max_model_kb: -5.0 is out of range; expected > 0.0"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_profiles_give_one_line_errors(tmp_path, case):
    text, expected = MALFORMED[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    proc = run_cli("targets", "show", str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    line = proc.stderr.strip()
    assert "\n" not in line
    assert line.startswith(f"edgepack: error: {path}{expected}")


def test_missing_host_for_ssh(tmp_path):
    # the parent gives host = "raspberrypi.local": a child cannot unset it, so write a full file
    text = (ROOT / "targets" / "rpi4.toml").read_text().replace('host = "raspberrypi.local"\n', "")
    path = tmp_path / "nohost.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as e:
        load_profile(str(path))
    line = text.splitlines().index("[connection]") + 1  # the error points at the section header
    assert str(e.value) == f"{path}:{line}: connection: missing 'host', needed when kind = \"ssh\""


def test_missing_section_key_and_cycle(tmp_path):
    text = (ROOT / "targets" / "rpi4.toml").read_text()
    nobudget = tmp_path / "nobudget.toml"
    nobudget.write_text(text[: text.index("[budgets]")] + text[text.index("[measure]"):])
    with pytest.raises(ProfileError) as e:
        load_profile(str(nobudget))
    assert str(e.value) == f"{nobudget}: missing [budgets] section"
    noruns = tmp_path / "noruns.toml"
    noruns.write_text(text.replace("runs = 200\n", ""))
    with pytest.raises(ProfileError) as e:
        load_profile(str(noruns))
    line = text.splitlines().index("[measure]") + 1
    assert str(e.value) == f"{noruns}:{line}: measure: missing 'runs' (timed runs)"
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ProfileError, match=r"a.toml: extends forms a cycle \(a.toml -> b.toml -> a.toml\)"):
        load_profile(str(tmp_path / "a.toml"))
    nomcu = tmp_path / "noflash.toml"
    nomcu.write_text((ROOT / "targets" / "cortex-m4.toml").read_text().replace("flash_kb = 1024\n", ""))
    with pytest.raises(ProfileError) as e:
        load_profile(str(nomcu))
    assert str(e.value) == f"{nomcu}:11: hardware: missing 'flash_kb': a tflm (microcontroller) target needs its flash size"


def test_targets_list_and_show():
    proc = run_cli("targets", "list")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == sorted(names) and set(SHIPPED) <= set(names)
    assert any(line.startswith("cortex-m4 ") and " tflm " in line and "tflite,c-source,c-program" in line for line in proc.stdout.splitlines())
    show = run_cli("targets", "show", "cortex-m7")
    assert show.returncode == 0
    lines = show.stdout.splitlines()
    assert lines[1].endswith("targets/cortex-m7.toml  (extends cortex-m4)")
    assert any(l.startswith("clock_mhz = 216  # from ") and l.endswith("cortex-m7.toml") for l in lines)
    assert any(l.startswith("flash_kb = 1024  # from ") and l.endswith("cortex-m4.toml") for l in lines)
    assert 'formats = ["tflite", "c-source", "c-program"]  # from ' in show.stdout
    assert run_cli("targets", "show", "nope").stderr.startswith("edgepack: error: unknown target 'nope'; known: ")
