"""Fingerprints of what training computes, to show that a change meant to keep results keeps them bit for bit.

Trains every objective of the study and the demo at their settings (digits-uncond under each objective's own
recipe, the demo's shortcut under its recipe "tuned", and the digits and checkerboard presets) for a few hundred steps, through the warm-up, the curriculum and distillation
stages, a checkpoint and a resume, then hashes the online and EMA weights and samples at 1, 4 and
128 steps from fixed noise. Run it before and after a change on the same machine and compare:

    python benchmarks/fingerprint.py --out /tmp/before.json     # on the old commit
    python benchmarks/fingerprint.py --compare /tmp/before.json # on the new one: exit 1 on any difference

Hashes are exact: other CPUs round differently, so compare on one machine only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

from shortcut_models.config import build_config
from shortcut_models.experiments.study_plan import RECIPES
from shortcut_models.inference import load_model
from shortcut_models.objectives import OBJECTIVES
from shortcut_models.runtime import tune_allocator
from shortcut_models.training import Trainer

STEPS = 240  # through the 200-step warm-up; each method's curriculum or stages at this length
STUDY = ["flow", "shortcut", "consistency-training", "consistency-distillation", "progressive-distillation"]
STUDY += ["live-reflow", "meanflow", "esc", "imm", "imf", "sct"]
# (name, preset, objective, overrides)
CASES = [(f"study-{m}", "digits-uncond", m, []) for m in STUDY] + [
    ("digits-shortcut", "digits", "shortcut", []),
    ("digits-shortcut-ema", "digits", "shortcut", ["target_network=ema", "bootstrap_cfg=true", "cfg_scale=1.5"]),
    ("uncond-ct-online", "digits-uncond", "consistency-training", ["target_network=online"]),
    ("demo-shortcut-tuned", "digits-uncond", "shortcut", list(RECIPES["tuned"])),
    ("checkerboard-shortcut", "checkerboard", "shortcut", []),
    ("digits-live-reflow-guided", "digits", "live-reflow", ["cfg_scale=1.5"]),
    ("checkerboard-live-reflow", "checkerboard", "live-reflow", []),
]


def digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(tmp: Path, name: str, preset: str, objective: str, extra: list[str]) -> dict[str, str]:
    teacher = [f"teacher={tmp / 'study-flow'}"] if OBJECTIVES[objective].teacher_run else []
    common = [f"steps={STEPS}", "eval_every=0", "logger=none", "ckpt_every=100", "sample_steps=[1]", *teacher, *extra]
    run = tmp / name
    # stop at step 150 (a checkpoint at 100, then a resume) to cover resuming, then finish
    Trainer(build_config(preset, objective, None, [*common, "steps=150"]), run, progress=False).run()
    trainer = Trainer(build_config(preset, objective, None, common), run, progress=False)
    trainer.run()
    out = {"online": digest(trainer.model.state_dict()), "ema": digest(trainer.ema.module.state_dict())}
    loaded = load_model(run, "cpu")
    for steps in (1, 4, 128):
        x = loaded.generate(16, steps, seed=1)
        out[f"samples@{steps}"] = digest({"x": x})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the fingerprints to this JSON file")
    parser.add_argument("--compare", help="compare with fingerprints written earlier; exit 1 on a difference")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cases", help="comma-separated case names (default: all; a case with a teacher run adds study-flow)"
    )
    args = parser.parse_args()
    cases = CASES
    if args.cases:
        wanted = set(args.cases.split(","))
        if any(OBJECTIVES[objective].teacher_run for name, _, objective, _ in CASES if name in wanted):
            wanted.add("study-flow")
        cases = [case for case in CASES if case[0] in wanted]
    tune_allocator()
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, preset, objective, extra in cases:
            results[name] = fingerprint(Path(tmp), name, preset, objective, extra)
            print(name, results[name], flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        diff = [f"{n}.{k}" for n in results for k in before[n] if results[n].get(k) != before[n][k]]
        print("identical" if not diff else f"DIFFERENT: {', '.join(diff)}")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
