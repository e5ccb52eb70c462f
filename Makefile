# Set-up and main jobs. Each target creates the virtual environment itself (Python 3.10+, pip).
# PyTorch is installed first (CPU wheel 2.13.0 by default) and pinned as a constraint for the rest,
# so no dependency can pull a different (e.g. multi-GB CUDA) build. Override with TORCH_SPEC=...

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip freeze | grep -i '^torch==' > $(VENV)/torch-constraint.txt
	$(PY) -m pip install --quiet -c $(VENV)/torch-constraint.txt -e '.[dev,tensorboard]'
	# FID's Inception network (torch-fidelity) needs only torch; --no-deps keeps PyPI's torchvision out
	$(PY) -m pip install --quiet --no-deps 'torch-fidelity>=0.3'
	touch $(STAMP)

## The main job on the embedded default: train shortcut and flow matching on the 2-D checkerboard,
## evaluate both at 1..128 steps, and draw samples (outputs under runs/demo/).
demo: $(STAMP)
	$(VENV)/bin/shortcut train --preset checkerboard --objective shortcut --out runs/demo/shortcut
	$(VENV)/bin/shortcut train --preset checkerboard --objective flow --out runs/demo/flow
	$(VENV)/bin/shortcut eval --ckpt runs/demo/shortcut --ckpt runs/demo/flow --steps 1,2,4,8,16,32,64,128 --num 5000 --out runs/demo/eval
	$(VENV)/bin/shortcut sample --ckpt runs/demo/shortcut --steps 1 --num 5000 --out runs/demo/shortcut_1step.png
	$(VENV)/bin/shortcut sample --ckpt runs/demo/flow --steps 1 --num 5000 --out runs/demo/flow_1step.png

## The whole test suite (CPU, a few minutes).
test: $(STAMP)
	$(PY) -m pytest

## Everything but the learning tests.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

## Speed ratios measured side by side (see benchmarks/).
bench: $(STAMP)
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache
