"""Several processes (torchrun, gloo on CPU): results do not depend on the number of processes.

Single-process checks of the row assignment come first; then two launches of 2 processes: the
`shortcut train` command itself, and tests/distributed/distributed_driver.py, which runs the other scenarios
(flow training, resume, a change of process count at resume, eval, sample, a signal and a NaN on one
rank) in one launch to keep the start-up cost (~8 s per launch on 2 cores) down.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from shortcut_models import distributed, seeding
from shortcut_models.cli import main
from shortcut_models.config import build_config
from shortcut_models.data import TensorSource, ToySource
from shortcut_models.data.sources import take_rows
from shortcut_models.distributed import split_batch
from shortcut_models.errors import UserError
from shortcut_models.evaluation.during_training import read_rows
from shortcut_models.inference import sample_blocks
from shortcut_models.objectives import ESC, OBJECTIVES, FlowMatching, Progress, Shortcut
from shortcut_models.seeding import RowDraws, RowShare
from shortcut_models.training import Trainer
from shortcut_models.training.interval_means import IntervalMeans

TINY = [
    "model_args.width=32",
    "model_args.depth=1",
    "batch_size=32",
    "log_every=2",
    "ema_decay=0.9",
    "sample_steps=[1]",
    "logger=none",
    "ckpt_every=100",
]
NUM = 37  # eval/sample count: not a multiple of 2 processes x batch 8, so the last block is padded
ROOT = Path(__file__).resolve().parents[2]


class Elementwise(nn.Module):
    """A teacher whose rows do not interact (exact results whatever the batch composition): only correctly
    rounded elementwise operations, no matmul or reduction whose kernel could depend on the number of rows."""

    num_classes = 10

    def forward(self, x, t, d, y, guidance=None):  # guidance (w, lo, hi): iMF feeds its scale as an input
        shape = (-1,) + (1,) * (x.ndim - 1)
        out = 0.7 * x + 0.3 * t.view(shape) - 0.2 * d.view(shape) + 0.01 * y.float().view(shape)
        if guidance is None:
            return out
        return out + 0.05 * (guidance[:, 0] + 2.0 * guidance[:, 1] + 3.0 * guidance[:, 2]).view(shape)


# ----------------------------------------------------------------- single process


def test_rank_rows_interleave_and_cover_the_batch():
    shares = [RowShare.interleaved(32, k, 4) for k in range(4)]
    assert shares[1].index.tolist() == [1, 5, 9, 13, 17, 21, 25, 29]
    assert sorted(torch.cat([s.index for s in shares]).tolist()) == list(range(32))
    assert RowShare.interleaved(32, 0, 1).is_whole and not shares[0].is_whole


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_self_consistency_share_is_the_same_on_every_rank(world):
    batch, nb = 256, Shortcut().kind_rows(256)[0]  # 32 self-consistency rows
    counts = [RowShare.interleaved(batch, k, world).count_below(nb) for k in range(world)]
    assert counts == [nb // world] * world  # the same fraction, 1/8, of every rank's rows


def assemble(objective, teacher, x1, y, seed, world):
    """Targets computed rank by rank, put back in global row order."""
    parts = []
    for k in range(world):
        share = RowShare.interleaved(x1.shape[0], k, world)
        g = torch.Generator().manual_seed(seed)
        parts.append((share.index, objective.targets(teacher, x1[share.index], y[share.index], g, rows=share)))
    out = {}
    for field in ("x_t", "t", "d", "v", "y", "kind"):
        ref = getattr(parts[0][1], field)
        full = torch.empty((x1.shape[0], *ref.shape[1:]), dtype=ref.dtype)
        for index, tg in parts:
            full[index] = getattr(tg, field)
        out[field] = full
    return out


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("batch", [16, 64])  # 16: 2 self-consistency rows < K, random levels
@pytest.mark.parametrize("per_row_noise", [False, True])
def test_union_over_ranks_equals_single_process_targets(world, batch, per_row_noise, monkeypatch):
    """Every process's rows of the targets equal the single process's bit for bit. Exact on any machine by
    the objectives' design: a row's targets come from its own draws through correctly rounded operations
    (+, -, *, /, sqrt, comparisons; logit-normal times in float64, rounded to float32) and the teacher's rows
    do not interact, so a row's bits do not depend on the other rows in the call. A float32 transcendental
    (sigmoid, pow: their vector and scalar code paths differ in the last bit, so a row's value would depend
    on where it falls in the batch) or a row-coupling step on a target would fail here."""
    if per_row_noise:  # large-batch path: every row's noise from its own generator
        monkeypatch.setattr(seeding, "GLOBAL_NOISE_LIMIT", 0)
    x1 = torch.randn(batch, 2, 3, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(2))
    teacher = Elementwise()
    for obj in (
        Shortcut(num_classes=10, class_dropout=0.3, bootstrap_cfg=True, cfg_scale=1.5),
        Shortcut.from_knobs(num_classes=10, time_sampler="logit-normal", loss_weight="adaptive"),
        FlowMatching(num_classes=10, class_dropout=0.3),
        FlowMatching.from_knobs(num_classes=10, time_sampler="uniform"),
        *(
            cls(num_classes=10, **ROWS_COUPLED.get(name, {}))
            for name, cls in OBJECTIVES.items()
            if name not in ("flow", "shortcut")
        ),
        # alpha-Flow's targets at step 0 have alpha = 1 (no network pass): also the blend (one pass) and
        # alpha = 0 (the Jacobian-vector product) held for the whole run
        *(
            OBJECTIVES["alpha-flow"](num_classes=10, alpha_schedule="constant", alpha_initial=alpha)
            for alpha in (0.5, 0.0)
        ),
    ):
        single = obj.targets(teacher, x1, y, torch.Generator().manual_seed(5))
        union = assemble(obj, teacher, x1, y, 5, world)
        for field, value in union.items():
            assert torch.equal(value, getattr(single, field)), (type(obj).__name__, field)


# Parts of an objective that couple the rows a process holds, switched off above: ESC's plug-in velocity is
# a kernel estimate over the data rows of the calling process (the authors' per-GPU batch); IMM's groups of
# particles are consecutive rows of one process (tests/objectives/test_imm.py), one row each here.
ROWS_COUPLED = {"esc": {"plugin_share": 0.0}, "imm": {"group_size": 1}}


@pytest.mark.parametrize("world", [2, 4])
def test_escs_plugin_rows_are_the_only_ones_that_depend_on_the_processes(world):
    """The non-plug-in rows are bit-identical (as in the test above, by the objectives' design); the plug-in
    rows' kernel estimate averages over other data rows in each process, a real difference, not rounding."""
    x1 = torch.randn(64, 2, 3, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    obj = ESC(num_classes=10)
    single = obj.targets(Elementwise(), x1, y, torch.Generator().manual_seed(5))
    union = assemble(obj, Elementwise(), x1, y, 5, world)
    g = torch.Generator().manual_seed(5)
    torch.randn(64, 2, 3, generator=g)  # the noise, drawn first
    plugin = obj.draw_rows(y, RowDraws.for_batch(64, g, torch.device("cpu")), obj.kind_rows(64)[0], Progress()).plugin
    for field, value in union.items():
        if field != "v":
            assert torch.equal(value, getattr(single, field)), field
    assert torch.equal(union["v"][~plugin], single.v[~plugin])
    assert not torch.allclose(union["v"][plugin], single.v[plugin])


def test_each_rank_takes_its_rows_of_the_global_data_batch():
    data = TensorSource("t", torch.arange(50.0)[:, None], torch.arange(50), 50)
    toy = ToySource("moons")
    for source in (data, toy):
        for step in (0, 3):  # step 3 of batch 16 crosses an epoch of the 50 items
            x, y = source.batch(step, 16, seed=4)
            for k in range(4):
                share = RowShare.interleaved(16, k, 4)
                xk, yk = take_rows(source, step, 16, 4, share)
                assert torch.equal(xk, x[share.index]) and torch.equal(yk, y[share.index])


def test_split_batch_global_semantics():
    assert split_batch(64, 1) == (64, 1)
    assert split_batch(64, 4, grad_accum=2) == (16, 2)
    assert split_batch(256, 8, batch_per_gpu=8) == (32, 4)  # grad_accum set to keep the global batch
    with pytest.raises(UserError, match="not divisible by the 3 processes"):
        split_batch(64, 3)
    with pytest.raises(UserError, match="world_size \\* grad_accum"):
        split_batch(64, 4, grad_accum=3)
    with pytest.raises(UserError, match="batch_per_gpu"):
        split_batch(64, 2, batch_per_gpu=5)


def test_sample_blocks_cover_every_index_once_in_gather_order():
    num, bs, world = NUM, 8, 2
    rank_blocks = [list(sample_blocks(num, bs, k, world)) for k in range(world)]
    merged = []
    for blocks in zip(*rank_blocks):
        size = blocks[0][1]
        assert len({len(idx) for idx, _ in blocks}) == 1  # equal counts: gathers stay in step
        merged += torch.stack([idx for idx, _ in blocks], dim=1).flatten().tolist()[:size]
    assert merged == list(range(num))
    assert [idx.tolist() for idx, _ in sample_blocks(20, 8)] == [
        list(range(8)),
        list(range(8, 16)),
        list(range(16, 20)),
    ]


def test_interval_means_weigh_parts_by_their_rows():
    means = IntervalMeans()
    means.add(
        {"loss": torch.tensor(1.0), "loss_consistency": torch.tensor(float("nan"))}, {"loss": 4, "loss_consistency": 0}
    )
    means.add({"loss": torch.tensor(3.0), "loss_consistency": torch.tensor(2.0)}, {"loss": 4, "loss_consistency": 2})
    assert means.means() == {"loss": 2.0, "loss_consistency": 2.0}


def test_an_interval_resumed_under_two_processes_averages_the_same_rows():
    """Two processes' intervals, checkpointed (summed over both) mid-interval and resumed: the first process
    holds the saved sums, the other the same keys at zero, so the next row is the uninterrupted one's."""
    steps = [({"loss": torch.tensor(v), "part": torch.tensor(v / 2)}, {"loss": 4, "part": w}) for v, w in
             [(1.0, 2), (3.0, 0), (5.0, 1), (7.0, 3)]]  # fmt: skip
    ranks = [IntervalMeans(), IntervalMeans()]
    for r, means in enumerate(ranks):
        for logs, weights in steps[r::2][:1]:  # one step each before the checkpoint
            means.add(logs, weights)

    saved = dict(ranks[0].state())
    other = ranks[1].state()
    saved["sums"] = saved["sums"] + other["sums"]  # what the collective gives
    saved["weights"] = [a + b for a, b in zip(saved["weights"], other["weights"])]
    resumed = [IntervalMeans(), IntervalMeans()]
    resumed[0].load_state(saved, torch.device("cpu"))
    resumed[1].load_state(saved, torch.device("cpu"), values=False)
    assert list(resumed[1].state()["keys"]) == ["loss", "part"] and resumed[1].state()["weights"] == [0.0, 0.0]
    for group in (ranks, resumed):
        for r, means in enumerate(group):
            means.add(*steps[2 + r])
    totals = []
    for group in (ranks, resumed):
        parts = [m.state() for m in group]
        sums = sum(p["sums"] for p in parts)
        weights = torch.tensor([sum(p["weights"][i] for p in parts) for i in range(2)])
        totals.append((sums / weights).tolist())
    assert totals[0] == pytest.approx(totals[1], rel=1e-6) and totals[0] == pytest.approx([4.0, 7 / 3])


@pytest.mark.parametrize("fails", [False, True])
def test_session_meets_the_other_processes_before_leaving_unless_it_failed(monkeypatch, fails):
    """A normal end waits at a barrier, collects garbage, then destroys the group (so gloo's threads
    finish releasing tensors while Python is alive); after an error no barrier (the others may never
    come) and the error propagates."""
    calls = []
    monkeypatch.setattr(distributed, "init", lambda device: True)
    monkeypatch.setattr(distributed, "is_active", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed.gc, "collect", lambda: calls.append("gc"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))

    def body():
        with distributed.session("cpu"):
            calls.append("work")
            if fails:
                raise UserError("bad input")

    if fails:
        with pytest.raises(UserError, match="bad input"):
            body()
        assert calls == ["work", "gc", "destroy"]
    else:
        body()
        assert calls == ["work", "barrier", "gc", "destroy"]


def test_cleanup_ignores_a_barrier_broken_by_a_process_that_left(monkeypatch):
    calls = []
    monkeypatch.setattr(distributed, "is_active", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)

    def broken():
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(distributed.dist, "barrier", broken)
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))
    distributed.cleanup()
    assert calls == ["destroy"]


def test_batch_not_divisible_by_world_size_exits_2(tmp_path):
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "shortcut_models",
        "train",
        "--preset",
        "checkerboard",
        "--out",
        str(tmp_path / "run"),
        "batch_size=32",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "not divisible by the 3 processes" in err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ two processes


def torchrun(*args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def single(tmp: Path, name: str, *extra: str, objective: str = "shortcut") -> Path:
    Trainer(build_config("checkerboard", objective, None, [*TINY, *extra]), tmp / name, progress=False).run()
    return tmp / name


def weights(run: Path, step: int = 4) -> dict[str, torch.Tensor]:
    folder = run / "checkpoints" / f"step_{step:08d}"
    return {f"{f}.{k}": v for f in ("model", "ema") for k, v in load_file(str(folder / f"{f}.safetensors")).items()}


def assert_close(a: Path, b: Path, exact: bool = False):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        if exact:
            assert torch.equal(wa[k], wb[k]), k
        else:
            assert torch.allclose(wa[k], wb[k], rtol=1e-5, atol=1e-5), (k, (wa[k] - wb[k]).abs().max())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("dist")


@pytest.fixture(scope="module")
def two_process_cli_run(work):
    """`torchrun -m shortcut_models train`: the command as users launch it."""
    out = work / "cli2"
    result = torchrun(
        "-m", "shortcut_models", "train", "--preset", "checkerboard", "--quiet", "--out", out, *TINY, "steps=4"
    )
    assert "2 processes, 16 rows each" in result.stderr
    return out


@pytest.fixture(scope="module")
def one_process_run(work):
    return single(work, "one", "steps=4")


@pytest.fixture(scope="module")
def digits_ckpt(work):
    out = work / "digits"
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--quiet",
                "model=DiT-Nano",
                "batch_size=16",
                "steps=2",
                "warmup_steps=0",
                "logger=none",
                "sample_steps=[1]",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def driver(work, digits_ckpt):
    single(work / "drv", "mixed", "steps=2")  # the driver resumes it with 2 processes
    settings = {"tiny": TINY, "digits_ckpt": str(digits_ckpt), "num": NUM}
    torchrun(ROOT / "tests" / "distributed" / "distributed_driver.py", work / "drv", json.dumps(settings))
    reports = [json.loads((work / "drv" / f"report_{k}.json").read_text()) for k in range(2)]
    assert [r["world"] for r in reports] == [2, 2]
    return work / "drv", reports


@pytest.mark.slow  # launches torchrun
def test_two_processes_train_like_one(one_process_run, two_process_cli_run):
    assert_close(one_process_run, two_process_cli_run)
    logs = [
        np.genfromtxt(run / "metrics.csv", delimiter=",", names=True) for run in (one_process_run, two_process_cli_run)
    ]
    for key in ("loss", "loss_flow", "loss_self_consistency", "grad_norm"):
        np.testing.assert_allclose(logs[0][key], logs[1][key], rtol=1e-4)


@pytest.mark.slow  # launches torchrun
def test_two_processes_train_flow_like_one(work, driver):
    assert_close(single(work, "flow1", "steps=4", objective="flow"), driver[0] / "flow")


@pytest.mark.slow  # launches torchrun
def test_resume_under_two_processes_is_exact(driver, two_process_cli_run):
    """Both runs are 2 processes of one thread each on this machine computing the same steps (the library
    resumes bit for bit), so the comparison is exact on any machine."""
    assert_close(driver[0] / "resumed", two_process_cli_run, exact=True)


@pytest.mark.slow  # launches torchrun
def test_resume_with_another_process_count(one_process_run, driver):
    assert_close(one_process_run, driver[0] / "mixed")


@pytest.mark.slow  # launches torchrun
def test_two_processes_with_accumulation_train_like_one(one_process_run, driver):
    assert_close(one_process_run, driver[0] / "accum")  # batch_per_gpu=8: 2 micro-batches of 8 per process


@pytest.mark.slow  # launches torchrun
def test_eval_and_sample_under_two_processes_match_one(work, driver, digits_ckpt):
    """The samples of one process and of two differ only by rounding (other batch compositions and thread
    counts): FD within 1e-6 (measured at most 7e-9 relative, also with AVX2 and SSE4.2 emulated), pixels
    within 1. Class accuracy is compared exactly: a rounding change cannot flip a class, the smallest gap
    between the top two logits over these samples being 0.04."""
    out = work / "eval1"
    assert (
        main(
            [
                "eval",
                "--ckpt",
                str(digits_ckpt),
                "--steps",
                "1,2",
                "--num",
                str(NUM),
                "--batch-size",
                "8",
                "--save-samples",
                "--out",
                str(out),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows1 = json.loads((out / "metrics.json").read_text())["rows"]
    rows2 = json.loads((driver[0] / "eval" / "metrics.json").read_text())["rows"]
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r1["fd_digits"] == pytest.approx(r2["fd_digits"], rel=1e-6, abs=1e-9)
        assert r1["class_accuracy"] == r2["class_accuracy"] and r1["num"] == r2["num"] == NUM
        a, b = np.load(r1["samples_file"]), np.load(r2["samples_file"])
        assert a["arr_0"].shape == b["arr_0"].shape == (NUM, 8, 8, 1)
        assert np.abs(a["arr_0"].astype(int) - b["arr_0"].astype(int)).max() <= 1 and np.array_equal(
            a["labels"], b["labels"]
        )
    assert (
        main(
            [
                "sample",
                "--ckpt",
                str(digits_ckpt),
                "--steps",
                "2",
                "--num",
                str(NUM),
                "--out",
                str(work / "s1.npz"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    a, b = np.load(work / "s1.npz"), np.load(driver[0] / "sample.npz")
    assert np.abs(a["arr_0"].astype(int) - b["arr_0"].astype(int)).max() <= 1 and np.array_equal(
        a["labels"], b["labels"]
    )


@pytest.mark.slow  # launches torchrun
def test_signal_on_one_rank_stops_every_rank_at_one_step(driver):
    run, reports = driver
    assert [r["signal"] for r in reports] == [{"final": "step_00000002", "step": 2, "signal": 15}] * 2
    assert (run / "signal" / "checkpoints" / "step_00000002" / "ema.safetensors").is_file()


@pytest.mark.slow  # launches torchrun
def test_nan_on_one_rank_stops_every_rank(driver):
    assert [r["nan"] for r in driver[1]] == [{"raised": True, "latest": "step_00000002"}] * 2


@pytest.mark.slow  # launches torchrun
def test_evaluation_during_training_under_two_processes_matches_one(work):
    """Each process generates its share of the fixed-noise samples and the feature statistics are summed:
    the rows of RUN/eval.csv do not depend on the number of processes (up to the training's own rounding:
    the 6 digits eval.csv keeps were equal also with AVX2 and SSE4.2 emulated; class accuracy cannot move
    by rounding, the smallest gap between the top two logits over these samples being 0.03)."""
    args = [
        "--quiet",
        "model=DiT-Nano",
        "batch_size=16",
        "steps=4",
        "warmup_steps=0",
        "logger=none",
        "sample_steps=[1]",
        "eval_every=2",
        "eval_num=37",
        "eval_steps=[1,2]",
    ]
    one, two = work / "eval_during_1", work / "eval_during_2"
    assert main(["train", "--out", str(one), *args]) == 0
    torchrun("-m", "shortcut_models", "train", "--out", two, *args)
    rows = [read_rows(run / "eval.csv") for run in (one, two)]
    assert [(r["step"], r["steps"], r["num"]) for r in rows[0]] == [(r["step"], r["steps"], r["num"]) for r in rows[1]]
    assert [r["step"] for r in rows[0]] == ["2", "2", "4", "4"]
    for a, b in zip(*rows):
        for key in ("fd_digits", "class_accuracy"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-3, abs=1e-6), (a, b)
