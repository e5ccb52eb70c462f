# Set-up and main jobs. Each target creates the virtual environment itself (Python 3.10+, pip).
# PyTorch is installed first (CPU wheel 2.13.0 by default) and pinned as a constraint for the rest,
# so no dependency can pull a different (e.g. multi-GB CUDA) build. Override with TORCH_SPEC=...

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-finetune study study-full digits digits-weights lint test test-fast bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip freeze | grep -i '^torch==' > $(VENV)/torch-constraint.txt
	$(PY) -m pip install --quiet -c $(VENV)/torch-constraint.txt -e '.[dev,tensorboard,latents,wandb,reference]'
	# FID's Inception network (torch-fidelity) needs only torch; --no-deps keeps PyPI's torchvision out
	$(PY) -m pip install --quiet --no-deps 'torch-fidelity>=0.3'
	touch $(STAMP)

## The main job: the study in miniature on embedded data (unconditional digits): flow matching
## and shortcut trained with one budget, FD at 1..128 steps over 5,000 samples, FD during training,
## grids, cost ratio -> runs/demo/report.md (7-18 minutes on 2 CPU cores; resumable).
demo: $(STAMP)
	$(VENV)/bin/shortcut demo --out runs/demo

## The demo plus flow matching fine-tuned into shortcut at 10/25/50% of the budget (about 10 more minutes).
demo-finetune: $(STAMP)
	$(VENV)/bin/shortcut demo --out runs/demo --finetune

## The study in an hour: the full study's leaders, flow matching and shortcut (8 methods) on one network,
## 3 seeds, 1,600 steps, each under its own recipe (its paper's) and flow matching, shortcut and MeanFlow under a
## common one, on digits and on the 2-D checkerboard, ranked with 95% intervals -> runs/study/report.md, its short
## answer compared with the committed full study's answers (resumable; two runs at a time on 2 cores).
study: $(STAMP)
	$(VENV)/bin/shortcut study --out runs/study --compare-with docs/study/full/answers.json

## The whole study: every registered method, 3 seeds, scored at 200, 400 and 800 steps and doubled to 1,600
## while the answer moves (--max-steps), 2 more seeds for the leaders, flow matching and shortcut, the ablation of
## the best one-step method without a teacher and flow matching fine-tuned into few-step models
## -> runs/study-full/report.md and answers.json (committed as docs/study/full/answers.json, `make study`
## compares its answers with it; resumable; two runs at a time; 3 h 48 min measured on 2 CPU cores, see the README;
## `shortcut study --full --dry-run` estimates it on this machine, about 2 times low on those 2 cores).
study-full: $(STAMP)
	$(VENV)/bin/shortcut study --full --out runs/study-full

## The embedded default of `shortcut train`: class-conditional digits, evaluated during training (3-7 minutes on 2 CPU cores).
digits: $(STAMP)
	$(VENV)/bin/shortcut train --out runs/digits-shortcut

## Maintainers, after a change of the digits network's recipe: train it and ship its weights
## (src/shortcut_models/metrics/weights/; the files of older recipes are removed). Commit the new file.
digits-weights: $(STAMP)
	$(PY) -c "from shortcut_models.metrics.digits_net import write_shipped; print('wrote', write_shipped())"

## Style (ruff lint + format check) and the layer contract (import-linter, see docs/architecture.md).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

## Lint, then the whole test suite (CPU, a few minutes).
test: lint
	$(PY) -m pytest

## Lint, then everything but the slow tests (learning, several processes, the whole demo): under a minute.
test-fast: lint
	$(PY) -m pytest -m "not slow"

## Speed ratios measured side by side (see benchmarks/).
bench: $(STAMP)
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache
