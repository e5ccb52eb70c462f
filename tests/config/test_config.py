"""Training configuration: a valid default, range checks on every key, objective knobs defined once."""

import dataclasses
import json

import pytest

from shortcut_models.cli import main
from shortcut_models.config import PRESETS, RESUMABLE_KEYS, TrainConfig, build_config, validate
from shortcut_models.errors import UserError
from shortcut_models.objectives import OBJECTIVES, FlowMatching, Shortcut, all_knobs


def test_the_default_config_is_valid_and_is_the_digits_preset_less_its_objective_knobs():
    cfg = TrainConfig()
    validate(cfg)
    assert (cfg.data, cfg.model, cfg.objective, cfg.class_conditional) == ("digits", "DiT-Digits", "shortcut", True)
    assert cfg.resolved_objective_args() == Shortcut().args()  # no knob set: shortcut's own (the paper's)
    digits = build_config()
    assert dataclasses.replace(digits, objective_args={}) == cfg
    assert digits.resolved_objective_args() == {**Shortcut().args(), "class_dropout": 0.1, "target_network": "online"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_preset_is_valid_with_every_objective(preset, objective):
    cfg = build_config(preset, objective)
    assert cfg.preset == preset and cfg.objective == objective


def test_the_presets_keep_their_settings():
    """The values the README and the measured results were produced with."""
    uncond = build_config("digits-uncond")
    assert (uncond.model, uncond.class_conditional, uncond.steps, uncond.batch_size, uncond.warmup_steps) == (
        "DiT-Digits/4",
        False,
        4000,
        64,
        200,
    )
    assert uncond.resolved_objective_args() == Shortcut().args()  # the study's own recipes: no knob changed
    imagenet = build_config("imagenet256").resolved_objective_args()
    assert imagenet == {**Shortcut().args(), "class_dropout": 0.1, "bootstrap_cfg": True, "cfg_scale": 1.5}
    toy = build_config("checkerboard")
    assert (toy.model, toy.model_args, toy.batch_size, toy.warmup_steps, toy.class_conditional) == (
        "mlp",
        {"width": 128, "depth": 3},
        256,
        0,
        False,
    )
    assert toy.resolved_objective_args() == Shortcut().args()  # the paper's knobs
    celeb = build_config("celebahq256")
    assert (celeb.lr, celeb.weight_decay, celeb.ema_warmup, celeb.class_conditional) == (1e-4, 0.1, False, False)


@pytest.mark.parametrize(
    "override, key",
    [
        ("steps=0", "steps"),
        ("steps=2.5", "steps"),
        ("batch_size=-4", "batch_size"),
        ("lr=0", "lr"),
        ("lr=nan", "lr"),
        ("weight_decay=-0.1", "weight_decay"),
        ("beta1=1", "beta1"),
        ("beta2=-0.5", "beta2"),
        ("warmup_steps=-1", "warmup_steps"),
        ("optimizer=lion", "optimizer"),
        ("momentum=1", "momentum"),
        ("momentum=-0.1", "momentum"),
        ("lr_schedule=bogus", "lr_schedule"),
        ("lr_min=-1e-5", "lr_min"),
        ("lr_min=0.5", "lr_min"),  # above the preset's lr
        ("decay_share=0", "decay_share"),
        ("decay_share=1.5", "decay_share"),
        ("grad_clip=-1", "grad_clip"),
        ("ema_decay=1.5", "ema_decay"),
        ("grad_accum=0", "grad_accum"),
        ("batch_per_gpu=-2", "batch_per_gpu"),
        ("sample_every=-1", "sample_every"),
        ("sample_steps=[0]", "sample_steps"),
        ("sample_steps=[]", "sample_steps"),
        ("sample_cfg_scale=inf", "sample_cfg_scale"),
        ("seed=-1", "seed"),
        ("log_every=0", "log_every"),
        ("ckpt_every=0", "ckpt_every"),
        ("keep_checkpoints=0", "keep_checkpoints"),
        ("precision=fp16", "precision"),
        ("logger=mlflow", "logger"),
        ("compile=yes", "compile"),
        ("class_conditional=1", "class_conditional"),
        ("model=DiT-Q/2", "model"),
        ("model_args=3", "model_args"),
        ("objective=diffusion", "objective"),
        ("ema_warmup=2", "ema_warmup"),
        ("bootstrap_every=0", "bootstrap_every"),
        ("class_dropout=1.5", "class_dropout"),
        ("max_steps=100", "max_steps"),
        ("cfg_scale=nan", "cfg_scale"),
        ("bootstrap_ema=true", "now target_network=ema or online"),  # a name of 0.1.x
        ("tensorboard=false", "now logger=tensorboard or none"),
        ("objective_args.bootstrap_ema=true", "bootstrap_ema"),
        ("objective_args.clip=0", "clip"),
        ("eval_every=-1", "eval_every"),
        ("eval_steps=[0,4]", "eval_steps"),
        ("eval_num=1", "eval_num"),
        ("eval_metric=inception", "eval_metric"),
        ("eval_cfg_scale=nan", "eval_cfg_scale"),
        ("eval_ref_stats=3", "eval_ref_stats"),
        ("objective_args.no_knob=1", "no_knob"),
    ],
)
def test_every_bad_value_is_one_line_naming_the_key(override, key, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=key):
        build_config(None, None, None, [override])
    assert main(["train", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and "Traceback" not in err, err


def test_every_field_has_a_check_and_a_resume_rule():
    for f in dataclasses.fields(TrainConfig):
        assert callable(f.metadata["spec"]) and f.metadata["spec"].describe(), f.name
        assert isinstance(f.metadata["resumable"], bool), f.name
    assert {
        "steps",
        "grad_accum",
        "batch_per_gpu",
        "compile",
        "sample_every",
        "sample_steps",
        "sample_cfg_scale",
        "logger",
        "device",
        "log_every",
        "ckpt_every",
        "keep_checkpoints",
        "eval_every",
        "eval_steps",
        "eval_num",
        "eval_metric",
        "eval_ref_stats",
        "eval_inception_weights",
        "eval_dinov2_weights",
        "eval_cfg_scale",
    } == RESUMABLE_KEYS


def test_objective_knobs_are_defined_once():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not fields & set(all_knobs()), "a knob is also a config key"
    assert set(all_knobs()) == {
        "class_dropout",
        "max_steps",
        "bootstrap_every",
        "bootstrap_cfg",
        "cfg_scale",
        "dt_bias",
        "clip",
        "teacher",
        "interval_share",
        "flow_row_time",
        "time_sampler",
        "time_mu",
        "time_sigma",
        "loss_weight",
        "adaptive_power",
        "adaptive_eps",
        "huber_c",
        "target_network",
        "target_clamp",
        # ESC's
        "terminal_steps",
        "plugin_share",
        "cfg_omega",
        "cfg_kappa",
        "cfg_t_min",
        "cfg_t_max",
        "derivative_warmup_steps",
        # IMM's
        "group_size",
        "gamma",
        "time_min",
        "weight_a",
        "weight_b",
        "clip_intermediate",
        # iMF's
        "flow_share",
        "cfg_max",
        "cfg_beta",
        # sCT's
        "time_draws",
        "tangent_norm",
        # SoFlow's
        "mix_ratio",
        "cfg_decay_below",
        "start_mu",
        "start_sigma",
        "end_mu",
        "end_sigma",
        "ratio_schedule",
        "ratio_start",
        "ratio_end",
        # Decoupled MeanFlow's
        "interval_mu_start",
        "interval_mu_end",
        "guidance_omega",
        "guidance_lo",
        "guidance_hi",
        "decoupled_depth",
        # α-Flow's
        "alpha_schedule",
        "alpha_initial",
        "alpha_final",
        "alpha_begin",
        "alpha_end",
        "alpha_gamma",
        "alpha_clamp",
        "adaptive_per_element",
    }


def test_knobs_are_accepted_flat_or_nested_and_other_objectives_knobs_are_ignored():
    flat = build_config(None, None, None, ["bootstrap_every=4"])
    nested = build_config(None, None, None, ["objective_args.bootstrap_every=4"])
    assert flat == nested and flat.objective_args["bootstrap_every"] == 4
    flow = build_config(None, "flow", None, ["bootstrap_every=4"])  # a shortcut knob: flow matching ignores it
    assert flow.resolved_objective_args() == {**FlowMatching().args(), "class_dropout": 0.1}


def test_knobs_given_as_top_level_keys_go_into_objective_args():
    cfg = TrainConfig.from_dict({"bootstrap_every": 4, "dt_bias": True, "steps": 10})
    assert cfg.objective_args == {"bootstrap_every": 4, "dt_bias": True}  # like TrainConfig(objective_args=...)
    assert cfg.steps == 10


@pytest.mark.parametrize(
    "values, old",
    [({"tensorboard": False}, "tensorboard"), ({"objective_args": {"bootstrap_ema": True}}, "bootstrap_ema")],
)
def test_names_of_0_1_are_unknown_keys_naming_what_replaced_them(values, old, tmp_path, capsys):
    with pytest.raises(
        UserError, match=rf"^unknown config key '{old}' \(a name of 0.1.x; now (logger|target_network)="
    ):
        TrainConfig.from_dict(values)
    file = tmp_path / "old.json"
    file.write_text(json.dumps(values))
    assert main(["config", "--config", str(file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"unknown config key '{old}'" in err


def test_optimisation_defaults_are_the_former_recipe_and_fix_what_a_run_computes():
    """AdamW with a constant learning rate after the warm-up, as before the registries; the keys change
    what a run computes, so a resumed run may not change them, and a config that leaves them out gets the
    defaults."""
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.lr_schedule, cfg.momentum, cfg.lr_min, cfg.decay_share) == (
        "adamw",
        "constant",
        0.9,
        0.0,
        0.2,
    )
    assert not {"optimizer", "lr_schedule", "momentum", "lr_min", "decay_share"} & RESUMABLE_KEYS
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("optimizer", "lr_schedule", "momentum", "lr_min")}
    assert TrainConfig.from_dict(old) == cfg
    assert build_config(None, None, None, ["optimizer=sgd", "lr_schedule=wsd", "lr_min=1e-3"]).lr_min == 1e-3


def test_a_batch_without_a_self_consistency_row_is_refused():
    with pytest.raises(UserError, match="no self-consistency row"):
        build_config(None, None, None, ["batch_size=4"])
    build_config(None, "flow", None, ["batch_size=4"])  # flow matching needs none


def test_sample_steps_beyond_max_steps_are_refused():
    with pytest.raises(UserError, match="sample_steps .* max_steps"):
        build_config(None, None, None, ["max_steps=64", "sample_steps=[1,128]"])
    with pytest.raises(UserError, match="eval_steps .* max_steps"):
        build_config(None, None, None, ["max_steps=64", "sample_steps=[1]", "eval_steps=[1,128]"])


def test_evaluation_during_training_defaults():
    """The digits default evaluates fd-digits at 1 and 4 steps every 1,000 steps; the latent presets carry
    the authors' interval with FID and name the reference statistics they need."""
    cfg = TrainConfig()
    assert (cfg.eval_every, cfg.eval_steps, cfg.eval_num, cfg.eval_metric) == (1000, [1, 4], 1000, "auto")
    for preset, ref in [
        ("celebahq256", "data/celebahq256-ref.npz"),
        ("imagenet256", "data/imagenet256-ref.npz"),
        ("imagenet256-xl", "data/imagenet256-ref.npz"),
    ]:
        cfg = build_config(preset)
        assert (cfg.eval_every, cfg.eval_steps, cfg.eval_num, cfg.eval_metric) == (20_000, [1, 4, 128], 4096, "fid")
        assert cfg.eval_ref_stats == ref


def test_config_files_merge_objective_knobs_with_the_preset(tmp_path):
    (tmp_path / "c.json").write_text('{"bootstrap_every": 4, "objective_args": {"dt_bias": true}}')
    (tmp_path / "list.json").write_text("[1, 2]")
    cfg = build_config("digits", None, str(tmp_path / "c.json"))
    assert cfg.objective_args == {
        "class_dropout": 0.1,
        "target_network": "online",
        "bootstrap_every": 4,
        "dt_bias": True,
    }
    with pytest.raises(UserError, match="JSON object"):
        build_config("digits", None, str(tmp_path / "list.json"))


def test_bad_config_values_are_user_errors():
    with pytest.raises(UserError, match="unknown config key"):
        build_config("checkerboard", None, None, ["no_such_key=1"])
    with pytest.raises(UserError, match="unknown preset"):
        build_config("nope", None, None, [])
    with pytest.raises(UserError, match="batch_size"):
        build_config("checkerboard", None, None, ["batch_size=0"])


def test_a_config_built_in_python_gets_the_same_checks(tmp_path):
    from shortcut_models.training import Trainer

    with pytest.raises(UserError, match="warmup_steps"):
        Trainer(TrainConfig(warmup_steps=-5), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
