"""The parts the trainer is assembled from, each built alone: batch plan, networks, description,
training views, checkpointed state, and the resume (config check, newest intact, lock)."""

import pytest
import torch

from shortcut_models import checkpoints as ckpt
from shortcut_models import runlock
from shortcut_models.config import build_config
from shortcut_models.data import build_source
from shortcut_models.errors import UserError
from shortcut_models.objectives import build_objective
from shortcut_models.optim import build_optimizer
from shortcut_models.training.batches import plan_batches
from shortcut_models.training.networks import build_networks, build_spec
from shortcut_models.training.resume import comparable, newest_intact, open_run, saved_config, schedule_note
from shortcut_models.training.state import RunState
from shortcut_models.training.wrapping import wrap_for_training

CPU = torch.device("cpu")
TOY = ["model_args.width=16", "model_args.depth=1", "batch_size=16", "logger=none", "sample_steps=[1]"]


def toy(*extra, objective="shortcut"):
    return build_config("checkerboard", objective, None, [*TOY, *extra])


def test_batch_plan_splits_rows_over_processes():
    plan = plan_batches(toy("batch_size=12", "grad_accum=2"), rank=1, world=3)
    assert (plan.rows_per_rank, plan.grad_accum) == (4, 2)
    assert plan.share.index.tolist() == [1, 4, 7, 10]
    assert plan_batches(toy("batch_size=16", "batch_per_gpu=4"), 0, 2).grad_accum == 2
    whole = plan_batches(toy("batch_size=16"), 0, 1)
    assert whole.share.is_whole and whole.rows_per_rank == 16
    with pytest.raises(UserError, match="batch_size"):
        plan_batches(toy("batch_size=16"), 0, 3)


def test_networks_are_seeded_and_the_ema_and_teacher_are_frozen_copies():
    cfg = toy()
    a = build_networks(cfg, (2,), 0, CPU, teacher=False)
    b = build_networks(cfg, (2,), 0, CPU, teacher=True)
    assert a.teacher is None and b.teacher is not None
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)  # the seed fixes the initialisation
    for net in (b.ema.module, b.teacher):
        assert not net.training and not any(p.requires_grad for p in net.parameters())
        assert all(torch.equal(p, q) for p, q in zip(net.parameters(), b.model.parameters()))
        assert all(p.data_ptr() != q.data_ptr() for p, q in zip(net.parameters(), b.model.parameters()))
    other = build_networks(toy("seed=1"), (2,), 0, CPU, teacher=False)
    assert not torch.equal(next(other.model.parameters()), next(a.model.parameters()))


def test_spec_describes_the_network_data_and_objective():
    cfg = toy()
    source = build_source(cfg.data)
    objective = build_objective(cfg.objective, 0, cfg.objective_args)
    nets = build_networks(cfg, source.shape, 0, CPU, teacher=False)
    spec = build_spec(nets.model, source, 0, objective, cfg.data)
    assert (spec.sample_shape, spec.num_classes, spec.objective, spec.data) == ((2,), 0, "shortcut", "checkerboard")
    assert spec.objective_args == objective.args()


def test_single_process_views_are_the_plain_modules():
    nets = build_networks(toy(), (2,), 0, CPU, teacher=False)
    views = wrap_for_training(nets.model, nets.ema.module, compiled=False, device=CPU, world=1)
    assert views.ddp is None
    assert views.train_model is nets.model and views.teacher_online is nets.model
    assert views.teacher_ema is nets.ema.module


def _stepped_state(cfg, teacher=False):
    nets = build_networks(cfg, (2,), 0, CPU, teacher=teacher)
    opt = build_optimizer(cfg, nets.model.parameters(), CPU)
    nets.model(torch.ones(3, 2), torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.long)).sum().backward()
    opt.step()
    nets.ema.update(nets.model)
    return RunState(nets.model, nets.ema, opt, nets.teacher, CPU)


def _save(run_dir, cfg, state, step):
    source = build_source(cfg.data)
    objective = build_objective(cfg.objective, 0, cfg.objective_args)
    spec = build_spec(state.model, source, 0, objective, cfg.data)
    config = ckpt.checkpoint_config(spec, step, cfg.to_dict())
    ckpt.save_checkpoint(run_dir, step, config, state.model, state.ema.module, state.to_save(), 5)
    return ckpt.checkpoint_dir(run_dir, step)


def test_run_state_saves_and_loads_back_every_tensor(tmp_path):
    cfg = toy()
    saved = _stepped_state(cfg)
    path = _save(tmp_path, cfg, saved, 7)
    fresh = _stepped_state(toy("seed=5"))
    assert fresh.load(path) == 7
    for a, b in zip(saved.model.parameters(), fresh.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(saved.ema.module.parameters(), fresh.ema.module.parameters()):
        assert torch.equal(a, b)
    assert fresh.ema.num_updates == 1
    moments = [s["exp_avg"] for s in fresh.optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, [s["exp_avg"] for s in saved.optimizer.state.values()]))
    with pytest.raises(UserError, match="holds no teacher weights"):  # a teacher-less checkpoint for a distiller
        _stepped_state(cfg, teacher=True).load(path)


def test_saved_config_accepts_resumable_changes_and_refuses_others(tmp_path):
    cfg = toy("steps=10")
    path = _save(tmp_path, cfg, _stepped_state(cfg), 3)
    assert saved_config(path, toy("steps=20", "log_every=3"), tmp_path).steps == 10
    with pytest.raises(UserError, match="different config .lr_schedule"):
        saved_config(path, toy("steps=10", "lr_schedule=cosine"), tmp_path)
    assert "steps" not in comparable(cfg) and "optimizer" in comparable(cfg)


def test_schedule_note_when_a_longer_run_changes_the_learning_rate():
    saved = toy("steps=100", "lr_schedule=cosine", "warmup_steps=0")
    assert schedule_note(saved, saved, 50) is None
    note = schedule_note(saved, toy("steps=200", "lr_schedule=cosine", "warmup_steps=0"), 50)
    assert "cosine" in note and "step 50" in note and "0.0005 to 0.000854" in note
    wsd = toy("steps=100", "lr_schedule=wsd", "warmup_steps=0")  # its decay starts at step 80
    assert schedule_note(wsd, toy("steps=200", "lr_schedule=wsd", "warmup_steps=0"), 50) is None
    assert schedule_note(toy("steps=100"), toy("steps=200"), 50) is None  # constant


def test_newest_intact_falls_back_and_sets_damaged_ones_aside(tmp_path, capsys):
    cfg = toy()
    for step in (2, 4, 6):
        _save(tmp_path, cfg, _stepped_state(cfg), step)
    tried = []

    def load(path):
        tried.append(ckpt.step_of(path))
        if ckpt.step_of(path) == 6:
            raise ckpt.DamagedCheckpoint("garbled")
        return ckpt.step_of(path)

    assert newest_intact(tmp_path, load) == 4
    assert tried == [6, 4]
    assert "warning: resuming from step_00000004: garbled" in capsys.readouterr().err
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [2, 4]
    assert newest_intact(tmp_path / "empty", load) == -1


def test_open_run_locks_the_directory_and_releases_it_on_failure(tmp_path, monkeypatch):
    taken = []
    real = runlock.acquire
    monkeypatch.setattr(runlock, "acquire", lambda run_dir: taken.append(real(run_dir)) or taken[-1])
    lock = open_run(tmp_path, True, lambda path: 0)
    assert lock is taken[0] and lock.held
    lock.release()
    _save(tmp_path, toy(), _stepped_state(toy()), 2)

    def refuse(path):
        raise UserError("another run")

    with pytest.raises(UserError, match="another run"):
        open_run(tmp_path, True, refuse)
    assert len(taken) == 2 and not taken[1].held
    assert open_run(tmp_path / "other", False, refuse) is None  # not rank 0: no lock, nothing to load


def test_open_run_makes_the_same_collective_calls_on_every_process(tmp_path, monkeypatch):
    """Under torchrun a collective that one process skips hangs the others: record them per rank."""
    from shortcut_models import distributed

    calls = []
    monkeypatch.setattr(distributed, "any_true", lambda flag: calls.append("any_true") or False)
    monkeypatch.setattr(distributed, "max_int", lambda value: calls.append("max_int") or value)
    _save(tmp_path, toy(), _stepped_state(toy()), 2)
    open_run(tmp_path, True, lambda path: 2).release()
    first, calls[:] = list(calls), []
    assert open_run(tmp_path, False, lambda path: 2) is None
    assert calls == first == ["any_true", "max_int", "any_true"]
