"""Named presets: each lists what differs from the :class:`~.train_config.TrainConfig` defaults (the
``digits`` preset's, with no objective knob set). Why each value was chosen, with the runs that chose it:
docs/demo/tuning.md (digits), docs/latents.md (the paper's settings).

Objective knobs: every knob a preset does not name in ``objective_args`` is at the objective's own default,
its paper's recipe (tests/config/test_preset_knobs.py checks it for every preset and objective). A preset
that changes one names it there, with the reason beside it; the knobs it names apply to every objective
that has them."""

from __future__ import annotations

from typing import Any

DEFAULT_PRESET = "digits"

# 2-D toys: a residual MLP; the EMA warm-up lets a run of a few thousand steps leave its initialisation.
_TOY = {
    "model": "mlp",
    "model_args": {"width": 128, "depth": 3},
    "class_conditional": False,
    "objective_args": {},
    "steps": 3000,
    "batch_size": 256,
    "lr": 1e-3,
    "warmup_steps": 0,
}

# The paper's recipe: AdamW lr 1e-4 constant, betas (0.9, 0.999), weight decay 0.1, no warm-up, no
# gradient clipping, EMA 0.999 every step, bf16 autocast with fp32 parameters (precision auto on CUDA),
# the EMA network as self-consistency teacher, one self-consistency row in 8.
# Evaluation as in the authors' trainer: FID of 4,096 samples every 20k steps (here at 1, 4 and 128 steps),
# against the statistics `shortcut ref-stats` writes (docs/latents.md).
_PAPER_EVAL = {"eval_every": 20_000, "eval_steps": [1, 4, 128], "eval_num": 4096, "eval_metric": "fid"}
_PAPER = {
    **_PAPER_EVAL,
    "model_args": {},
    "lr": 1e-4,
    "beta1": 0.9,
    "beta2": 0.999,
    "weight_decay": 0.1,
    "warmup_steps": 0,
    "grad_clip": 0.0,
    "ema_decay": 0.999,
    "ema_warmup": False,
    "log_every": 100,
    "ckpt_every": 10_000,
    "sample_every": 20_000,
    "keep_checkpoints": 3,
}

# Each preset lists what differs from the TrainConfig defaults (the digits preset's, no objective knob set).
PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default: class-conditional 8x8 digits with a small DiT, minutes on a laptop CPU.
    "digits": {
        "objective_args": {
            # the online network builds the targets (shortcut's self-consistency, consistency training's...): on
            # a 4,000-step budget the EMA network lags, and shortcut's FD at 1-4 steps is about twice as large
            # with it (docs/demo/tuning.md); shortcut's own default, the paper's for runs of 400k+ steps, is EMA
            "target_network": "online",
            # the null label on one flow-matching row in 10, so that samples can be guided (the default of flow
            # matching, shortcut and live reflow is 0; the authors' train.py and MeanFlow and later methods use 0.1)
            "class_dropout": 0.1,
        },
    },
    # The study's and the demo's digits (make study, make demo): unconditional digits, null label everywhere, on
    # DiT-Digits/4 (chosen by the runs of docs/demo/tuning.md). It names no objective knob: the study's "own"
    # recipes are each method's own defaults; the demo names its tuned choice as a recipe of the study
    # (experiments/study_plan.py, RECIPES["tuned"]).
    "digits-uncond": {
        "model": "DiT-Digits/4",
        "class_conditional": False,
        "objective_args": {},
        "sample_steps": [1, 2, 4, 128],
    },
    # The paper's settings on Stable Diffusion VAE latents of 256x256 images. Point `data` at a cache made by
    # `shortcut encode` (data=latents:DIR); see docs/latents.md.
    "celebahq256": {
        **_PAPER,
        "data": "latents:data/celebahq256-latents",
        "model": "DiT-B/2",
        "class_conditional": False,
        "objective_args": {},
        "batch_size": 64,
        "steps": 410_000,
        "eval_ref_stats": "data/celebahq256-ref.npz",
    },
    "imagenet256": {
        **_PAPER,
        "data": "latents:data/imagenet256-latents",
        "model": "DiT-B/2",
        "batch_size": 256,
        "steps": 810_000,
        "sample_cfg_scale": 1.5,
        "objective_args": {"class_dropout": 0.1, "bootstrap_cfg": True, "cfg_scale": 1.5},
        "eval_ref_stats": "data/imagenet256-ref.npz",
    },
    "imagenet256-xl": {
        **_PAPER,
        "data": "latents:data/imagenet256-latents",
        "model": "DiT-XL/2",
        "batch_size": 256,
        "steps": 810_000,
        "sample_cfg_scale": 1.5,
        "objective_args": {"class_dropout": 0.1, "bootstrap_cfg": True, "cfg_scale": 1.5},
        "eval_ref_stats": "data/imagenet256-ref.npz",
    },
    "checkerboard": {**_TOY, "data": "checkerboard"},
    "eight_gaussians": {**_TOY, "data": "eight_gaussians"},
    "moons": {**_TOY, "data": "moons"},
    "spirals": {**_TOY, "data": "spirals"},
}
