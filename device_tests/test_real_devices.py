"""Tests on real devices, run when one is named in the environment (README: "Real devices"):

- EDGEPACK_ADB_SERIAL: an Android device attached to this machine, with EDGEPACK_BENCHMARK_MODEL
  the path of LiteRT's benchmark_model built for it (android_arm64);
- EDGEPACK_SSH_HOST: ``user@host[:port]`` of a Linux board (a Raspberry Pi) whose host key is in
  ~/.ssh/known_hosts, that accepts this machine's SSH key and has ai-edge-litert (or
  tflite-runtime) for its python3.
"""

from __future__ import annotations

import json
import os

import pytest

from fixture_models import int8_model
from helpers import run_cli

MODEL = int8_model("kws")  # a DS-CNN keyword spotter made by the tests (fixture_models.py)
SERIAL, SSH, BM = os.environ.get("EDGEPACK_ADB_SERIAL"), os.environ.get("EDGEPACK_SSH_HOST"), os.environ.get("EDGEPACK_BENCHMARK_MODEL")


@pytest.mark.skipif(not SERIAL, reason="no Android device named (set EDGEPACK_ADB_SERIAL and EDGEPACK_BENCHMARK_MODEL)")
def test_android_device(tmp_path):
    assert BM, "set EDGEPACK_BENCHMARK_MODEL to LiteRT's benchmark_model built for the device"
    prof = tmp_path / "phone.toml"
    prof.write_text(f'extends = "android-arm64"\n[connection]\nkind = "adb"\nserial = "{SERIAL}"\nbenchmark_model = "{BM}"\n')
    proc = run_cli("bench", str(MODEL), "--target", str(prof), "--json", "-q", "--store", str(tmp_path / "h.sqlite"))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["latency"]["measured_on"] == "adb" and r["latency"]["median_ms"] > 0 and r["emulated"] is False


@pytest.mark.skipif(not SSH, reason="no SSH board named (set EDGEPACK_SSH_HOST=user@host[:port])")
def test_ssh_board(tmp_path):
    proc = run_cli("bench", str(MODEL), "--target", "rpi4", "--device", f"ssh://{SSH}", "--json", "-q",
                   "--store", str(tmp_path / "h.sqlite"))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["latency"]["measured_on"] == "ssh" and r["latency"]["median_ms"] > 0
