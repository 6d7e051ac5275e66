# The two README commands: `make demo` and `make test`. Both set up .venv first; a second run
# with nothing changed skips the install (the stamp file is newer than its inputs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgepack-installed
# onnx2tf, tf-keras and tosa-tools (needed by ExecuTorch's Arm backends) pin old exact versions of
# numpy, protobuf, tensorflow and flatbuffers; they work with the newer ones we use, so they are
# installed without their declared dependencies (README: "pip check").
NODEPS := onnx2tf==1.29.24 tf-keras==2.21.0 tosa-tools==2026.8.0

.PHONY: setup demo test bench clean constraints

setup: $(STAMP)

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

test: setup
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(PY) benchmarks/build_demo.py

# Record the exact versions of the current venv (after a deliberate upgrade that passed make test).
constraints: setup
	{ echo "# Exact versions the test suite passed with (Python 3.11, x86_64 CPU). The Makefile installs with"; \
	  echo "# '-c constraints.txt' so a fresh machine gets the same stack. Regenerate: make constraints"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -i -E "^(onnx2tf|tf.keras|tosa.tools)==" \
	  | sed -E 's/^([A-Za-z0-9_.-]+) @ file:.*\/[A-Za-z0-9_.]+-([^-]+)-.*\.whl.*/\1==\2/'; } > constraints.txt

clean:
	rm -rf dist build *.egg-info toolchain/*.egg-info
