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
from shortcut_models.training.resume import (
    as_resumed,
    comparable,
    newest_intact,
    open_run,
    read_checkpoint,
    schedule_note,
)
from shortcut_models.training.state import RunState, read_state
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
    trained = cfg if "step_input" in cfg.model_args else cfg.with_step_input("level")  # as a trainer records it
    config = ckpt.checkpoint_config(spec, step, trained.to_dict())
    ckpt.save_checkpoint(run_dir, step, config, state.model, state.ema.module, state.to_save(), 5)
    return ckpt.checkpoint_dir(run_dir, step)


def test_run_state_saves_and_loads_back_every_tensor(tmp_path):
    cfg = toy()
    saved = _stepped_state(cfg)
    path = _save(tmp_path, cfg, saved, 7)
    fresh = _stepped_state(toy("seed=5"))
    assert fresh.restore(read_state(path, teacher=False)) == 7
    for a, b in zip(saved.model.parameters(), fresh.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(saved.ema.module.parameters(), fresh.ema.module.parameters()):
        assert torch.equal(a, b)
    assert fresh.ema.num_updates == 1
    moments = [s["exp_avg"] for s in fresh.optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, [s["exp_avg"] for s in saved.optimizer.state.values()]))
    with pytest.raises(UserError, match="holds no teacher weights"):  # a teacher-less checkpoint for a distiller
        read_state(path, teacher=True)


def _objective(cfg):
    return build_objective(cfg.objective, 0, cfg.objective_args)


def test_as_resumed_accepts_resumable_changes_and_refuses_others(tmp_path):
    cfg = toy("steps=10")
    path = _save(tmp_path, cfg, _stepped_state(cfg), 3)
    longer = toy("steps=20", "log_every=3")
    trained, saved = as_resumed(longer, _objective(longer), path, ckpt.read_config(path))
    assert (trained.steps, saved.steps) == (20, 10) and trained.model_args["step_input"] == "level"
    with pytest.raises(UserError, match=f"{tmp_path} holds a run with a different config .lr_schedule"):
        as_resumed(toy("lr_schedule=cosine"), _objective(cfg), path, ckpt.read_config(path))
    assert "steps" not in comparable(cfg) and "optimizer" in comparable(cfg)


def test_as_resumed_compares_the_teacher_and_initial_weights_only_when_asked(tmp_path):
    cfg = toy("init_from=/runs/a")
    path = _save(tmp_path, cfg, _stepped_state(cfg), 3)
    moved = toy("init_from=/moved/a")
    with pytest.raises(UserError, match="different config .init_from"):
        as_resumed(moved, _objective(moved), path, ckpt.read_config(path))
    trained, _ = as_resumed(moved, _objective(moved), path, ckpt.read_config(path), sources=False)
    assert trained.init_from == "/runs/a"


def test_read_checkpoint_reads_its_config_once(tmp_path, monkeypatch):
    cfg = toy("steps=10", "lr_schedule=cosine", "warmup_steps=0")
    path = _save(tmp_path, cfg, _stepped_state(cfg), 3)
    reads = []
    real = ckpt.read_config
    monkeypatch.setattr(ckpt, "read_config", lambda p: reads.append(p) or real(p))
    longer = toy("steps=20", "lr_schedule=cosine", "warmup_steps=0")
    resume = read_checkpoint(path, longer, _objective(longer))
    assert reads == [path] and resume.saved.step == 3 and resume.cfg.steps == 20
    assert "steps changed from 10 to 20" in resume.note


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

    def read(path):
        tried.append(ckpt.step_of(path))
        if ckpt.step_of(path) == 6:
            raise ckpt.DamagedCheckpoint("garbled")
        return read_checkpoint(path, cfg, _objective(cfg))

    assert newest_intact(tmp_path, read).saved.step == 4
    assert tried == [6, 4]
    assert "warning: resuming from step_00000004: garbled" in capsys.readouterr().err
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [2, 4]
    assert newest_intact(tmp_path / "empty", read) is None


def _read(path):
    return read_checkpoint(path, toy(), _objective(toy()))


def test_open_run_locks_the_directory_and_releases_it_on_failure(tmp_path, monkeypatch):
    taken = []
    real = runlock.acquire
    monkeypatch.setattr(runlock, "acquire", lambda run_dir: taken.append(real(run_dir)) or taken[-1])
    lock, resume = open_run(tmp_path, True, _read)
    assert lock is taken[0] and lock.held and resume is None
    lock.release()
    _save(tmp_path, toy(), _stepped_state(toy()), 2)

    def refuse(path):
        raise UserError("another run")

    with pytest.raises(UserError, match="another run"):
        open_run(tmp_path, True, refuse)
    assert len(taken) == 2 and not taken[1].held
    assert open_run(tmp_path / "other", False, refuse) == (None, None)  # not rank 0: no lock, nothing to read


def test_open_run_makes_the_same_collective_calls_on_every_process(tmp_path, monkeypatch):
    """Under torchrun a collective that one process skips hangs the others: record them per rank."""
    from shortcut_models import distributed

    calls = []
    monkeypatch.setattr(distributed, "any_true", lambda flag: calls.append("any_true") or False)
    # rank 0 resumes at step 2; the other process takes that step from the all-reduce
    monkeypatch.setattr(distributed, "max_int", lambda value: calls.append("max_int") or max(value, 2))
    _save(tmp_path, toy(), _stepped_state(toy()), 2)
    lock, resume = open_run(tmp_path, True, _read)
    lock.release()
    first, calls[:] = list(calls), []
    lock, followed = open_run(tmp_path, False, _read)
    assert lock is None and followed.saved.step == resume.saved.step == 2
    assert calls == first == ["any_true", "max_int", "any_true"]
