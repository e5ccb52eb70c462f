"""Named presets: each lists what differs from the :class:`~.train_config.TrainConfig` defaults (the
``digits`` preset). Why each value was chosen, with the runs that chose it: docs/demo/tuning.md (digits),
docs/latents.md (the paper's settings)."""

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

# Each preset lists what differs from the TrainConfig defaults (the digits preset).
PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default: class-conditional 8x8 digits with a small DiT, minutes on a laptop CPU, the online
    # network building the self-consistency targets (why: docs/demo/tuning.md).
    "digits": {},
    # The demo's study in miniature (make demo): unconditional digits, null label everywhere, on DiT-Digits/4;
    # the network and the online targets were chosen by the runs of docs/demo/tuning.md.
    "digits-uncond": {
        "model": "DiT-Digits/4",
        "class_conditional": False,
        "objective_args": {"target_network": "online"},
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
