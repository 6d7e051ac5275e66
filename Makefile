# The two README commands: `make demo` and `make test`. Both set up .venv first; a second run
# with nothing changed skips the install (the stamp file is newer than its inputs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgepack-installed
# onnx2tf, tf-keras and tosa-tools (needed by ExecuTorch's Arm backends) pin old exact versions of
# numpy, protobuf, tensorflow and flatbuffers; they work with the newer ones we use, so they are
# installed without their declared dependencies (README: "pip check"). onnx2torch (ONNX models in)
# declares torchvision, which has no build for this torch: it is used without (models/onnx_in.py).
NODEPS := onnx2tf==1.29.24 tf-keras==2.21.0 tosa-tools==2026.8.0 onnx2torch==1.5.15

SYSTEM := $(VENV)/.system-packages
ARM64  := $(HOME)/.cache/edgepack/arm64-sysroot/.complete
# Debian packages the device tests need: a real sshd and the adb client (required), PostgreSQL for
# the shared tuning study's tests (a throwaway cluster, started by the tests), arm-none-eabi-gcc for
# the microcontroller bundles (the model's flash is read from its object file) with newlib's C library
# (a detection bundle's decoder uses <math.h>); qemu-system-arm for the emulated Cortex-M boards the
# generated C programs run on; qemu-user for the emulated arm64 board (optional: its tests are
# skipped, with the reason, where it cannot be had).
APT_REQUIRED := openssh-server openssh-client adb postgresql gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
APT_OPTIONAL := qemu-user-static

.PHONY: setup demo test bench clean constraints system arm64-sysroot artifacts

# `make artifacts`: what CI's build job runs (and what you can run here): build the demo bundle for
# each target into $(DIST)/<target>/ and verify it. The build time is pinned to the last commit's
# (SOURCE_DATE_EPOCH), so the same commit gives byte-identical bundles (docs/ci.md).
ARTIFACT_TARGETS ?= android-arm64 cortex-m4 cortex-m55-u55 cortex-m7 rpi4 rpi5 x86-64
DIST ?= dist
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

setup: $(STAMP) $(SYSTEM) arm64-sysroot

$(SYSTEM): Makefile
	@mkdir -p $(VENV)
	@need=""; for p in $(APT_REQUIRED) $(APT_OPTIONAL); do dpkg -s $$p >/dev/null 2>&1 || need="$$need $$p"; done; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "set-up: please install these Debian packages (needs root):$$need"; exit 1; fi; \
	  echo "installing Debian packages:$$need"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_REQUIRED) >/dev/null \
	  && { DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_OPTIONAL) >/dev/null \
	       || echo "set-up: $(APT_OPTIONAL) not installed; the emulated arm64 tests will be skipped"; } || exit 1; \
	fi
	@touch $(SYSTEM)

# The emulated arm64 board's sysroot (Debian arm64 Python + aarch64 LiteRT wheel), built once.
arm64-sysroot: $(STAMP) $(SYSTEM)
	@test -f $(ARM64) || { command -v qemu-aarch64-static >/dev/null \
	  && PYTHON=$(PY) $(PY) -m edgepack.devices.qemu || echo "set-up: no emulated arm64 board (see above); its tests will be skipped"; }

$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(NODEPS)
	@$(PY) -c "import edgepack, onnx2tf, tensorflow, ai_edge_litert, torch_pruning, executorch.exir, ethosu.vela; \
	  import executorch.backends.arm.ethosu, executorch.backends.cortex_m.quantizer.quantizer" 2>$(VENV)/import-check.log \
	  || { cat $(VENV)/import-check.log; echo "set-up failed: the stack does not import (see above)"; exit 1; }
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/edgepack build --target rpi4 --out dist

# the suite on TEST_WORKERS processes (pytest-xdist; 0: on this one). tests/conftest.py orders it.
TEST_WORKERS ?= 2
test: setup
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS)

artifacts: setup
	@set -e; for t in $(ARTIFACT_TARGETS); do \
	  echo "== $$t"; \
	  SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(VENV)/bin/edgepack build --target $$t --out $(DIST) --quiet; \
	  $(VENV)/bin/edgepack verify $(DIST)/$$t; \
	done

bench: setup
	$(PY) benchmarks/build_demo.py

# Record the exact versions of the current venv (after a deliberate upgrade that passed make test).
constraints: setup
	{ echo "# Exact versions the test suite passed with (Python 3.11, x86_64 CPU). The Makefile installs with"; \
	  echo "# '-c constraints.txt' so a fresh machine gets the same stack. Regenerate: make constraints"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -i -E "^(onnx2tf|tf.keras|tosa.tools)==" \
	  | sed -E 's/^([A-Za-z0-9_.-]+) @ file:.*\/[A-Za-z0-9_.]+-([^-]+)-.*\.whl.*/\1==\2/'; } > constraints.txt

clean:
	rm -rf $(DIST) build *.egg-info toolchain/*.egg-info
