"""The sample sheets at the end of a run report their progress on stderr when the trainer shows
progress, and print nothing when it does not; the sheets are the same either way (byte for byte: both runs
compute the same steps and samples in this process, so on any machine)."""

import pytest

from shortcut_models.config import build_config
from shortcut_models.training import Trainer

TOY = ["model_args.width=16", "model_args.depth=1", "batch_size=16"]
RUN = ["steps=2", "logger=none", "eval_every=0", "sample_steps=[1,4]"]


@pytest.mark.parametrize("preset", ["checkerboard", "digits"])
def test_sheets_report_progress_only_when_asked(preset, nano_args, tmp_path, capfd):
    cfg = build_config(preset, "flow", None, [*(TOY if preset == "checkerboard" else nano_args), *RUN])
    quiet = Trainer(cfg, tmp_path / "quiet", progress=False)
    quiet.run()
    assert capfd.readouterr().err == ""
    shown = Trainer(cfg, tmp_path / "shown", progress=True)
    shown.run()
    err = capfd.readouterr().err
    assert (
        f"writing sample sheets of flow@2 ({2000 if preset == 'checkerboard' else 100} samples at 1, 4 step(s))" in err
    )
    assert str(shown.run_dir / "samples" / "step_00000002") in err
    assert "sample sheets" in err and "pass" in err  # the bar, counting network passes
    sheets = sorted((quiet.run_dir / "samples" / "step_00000002").iterdir())
    assert {p.name for p in sheets} >= {"steps_001.png", "steps_004.png"}
    for sheet in sheets:
        assert sheet.read_bytes() == (shown.run_dir / "samples" / "step_00000002" / sheet.name).read_bytes(), sheet.name
