"""Training-step time of the shortcut objective over flow matching, same model and batch.

Both trainers are built from one config (only ``objective`` differs) and their steps are timed
alternately in one process, so machine noise hits both alike; the median ratio is printed next to
the FLOP cost model 1 + 2f/3 with f = 1 / bootstrap_every (a training step is
~3 forward-equivalents; shortcut adds two no-grad forwards on a fraction f of the batch). With a guided
teacher (bootstrap_cfg, the ImageNet recipe) the rows at the finest level get a second, unconditional
pass, counted in f.

    python benchmarks/train_step.py                 # CPU: MLP on the 2-D checkerboard and a small DiT on digits;
                                                    # GPU: DiT-B/2 on latents, unconditional and ImageNet recipe
    python benchmarks/train_step.py --repeats 200 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from shortcut_models.config import build_config
from shortcut_models.experiments.timing import interleaved_step_times, median_ratio
from shortcut_models.objectives.schedule import num_levels
from shortcut_models.runtime import tune_allocator
from shortcut_models.seeding import RowDraws
from shortcut_models.training import Trainer

CASES = {
    "mlp-checkerboard": ("checkerboard", ["logger=none"]),
    "dit-digits": ("digits", ["logger=none"]),
    # GPU cases: DiT-B/2 on 4x32x32 latents (synthetic batches of the latent cache's size), bf16
    "dit-b2-celebahq": ("celebahq256", ["data=synthetic:4x32x32", "logger=none"]),
    "dit-b2-imagenet": ("imagenet256", ["data=synthetic:4x32x32:1000", "logger=none"]),
}
DEFAULT_CASES = {"cpu": ["mlp-checkerboard", "dit-digits"], "cuda": ["dit-b2-celebahq", "dit-b2-imagenet"]}


def cost_fraction(trainer: Trainer) -> float:
    """Extra teacher rows per batch row: f = B_b / B, plus the guided rows' extra passes (bootstrap_cfg)."""
    objective, batch = trainer.objective, trainer.cfg.batch_size
    nb = objective.kind_rows(batch)[0]
    guided = 0
    if objective.bootstrap_cfg:  # rows at the finest self-consistency level get a second, unconditional pass
        levels = objective.levels(RowDraws.for_batch(nb, None, torch.device("cpu")))
        guided = int((levels == num_levels(objective.max_steps) - 1).sum())
    return (nb + guided) / batch


def bench_case(name: str, repeats: int, warmup: int, extra: list[str]) -> dict[str, float]:
    preset, overrides = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            obj: Trainer(build_config(preset, obj, None, [*overrides, *extra]), f"{tmp}/{obj}", progress=False)
            for obj in ("shortcut", "flow")
        }
        times = interleaved_step_times(runs, repeats, warmup)
        f = cost_fraction(runs["shortcut"])
        return {
            "shortcut_ms": 1e3 * statistics.median(times["shortcut"]),
            "flow_ms": 1e3 * statistics.median(times["flow"]),
            "ratio": median_ratio(times["shortcut"], times["flow"]),
            "cost_model": 1 + 2 * f / 3,
            "batch": runs["flow"].cfg.batch_size,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--case", choices=list(CASES), action="append")
    parser.add_argument("overrides", nargs="*", help="extra key=value config overrides for both runs")
    args = parser.parse_args()
    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    print(f"{'case':>18} {'batch':>6} {'flow ms':>9} {'shortcut ms':>12} {'ratio':>7} {'1+2f/3':>7} {'vs model':>9}")
    for name in args.case or DEFAULT_CASES[device]:
        r = bench_case(name, args.repeats, args.warmup, args.overrides)
        print(
            f"{name:>18} {r['batch']:>6} {r['flow_ms']:>9.2f} {r['shortcut_ms']:>12.2f} {r['ratio']:>7.3f} "
            f"{r['cost_model']:>7.3f} {r['ratio'] / r['cost_model']:>9.3f}"
        )


if __name__ == "__main__":
    main()
