"""The optional guidance input of the networks (iMF): ``model(x, t, d, y, guidance=g)``, g = (w, lo, hi) per row.

Networks built without it keep their parameters, config and call, and refuse a guidance; networks built with
it record it in their config (so checkpoints rebuild it), pass it through their wrappers, and default to no
guidance (w = 1 on [0, 1]); the sampler feeds it in one network pass per step.
"""

from __future__ import annotations

import copy

import pytest
import torch

from shortcut_models import guidance as guide
from shortcut_models.models import build_model, build_network, network_spec
from shortcut_models.sampling import sample
from shortcut_models.training.ema import EMA

NUM_CLASSES = 10
NETS = {"DiT-Nano": (1, 8, 8), "mlp": (3,)}


def _net(name: str, guidance_input: bool, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    args = {"guidance_input": True} if guidance_input else {}
    if name == "mlp":
        args["width"] = 32
    model = build_model(name, NETS[name], NUM_CLASSES, args)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # leave the zero initialisation: every input matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _inputs(name: str, b: int = 4):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(b, *NETS[name], generator=g)
    return x, torch.rand(b, generator=g), torch.full((b,), 0.25), torch.randint(0, NUM_CLASSES, (b,), generator=g)


@pytest.mark.parametrize("name", NETS)
def test_guidance_is_an_input_and_its_default_is_none(name):
    model = _net(name, True)
    x, t, d, y = _inputs(name)
    plain = model(x, t, d, y)
    torch.testing.assert_close(plain, model(x, t, d, y, guidance=guide.none(4, "cpu")), rtol=0, atol=0)
    for g in (guide.rows(4.0, 0.0, 1.0, 4, "cpu"), guide.rows(1.0, 0.3, 0.7, 4, "cpu")):
        assert (model(x, t, d, y, guidance=g) - plain).abs().max() > 1e-4  # the scale and the interval matter
    per_row = guide.rows(torch.tensor([1.0, 2.0, 3.0, 4.0]), 0.1, 0.9, 4, "cpu")
    rows = torch.cat(
        [model(x[i : i + 1], t[i : i + 1], d[i : i + 1], y[i : i + 1], guidance=per_row[i : i + 1]) for i in range(4)]
    )
    # one row at a time against one call of 4 rows: other matrix shapes, so rounding may differ (up to ~3e-7
    # on outputs below 1, CPU-dependent); a row given another row's scale moves by over 4e-4
    torch.testing.assert_close(model(x, t, d, y, guidance=per_row), rows, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NETS)
def test_a_network_without_the_input_refuses_guidance_and_is_unchanged(name):
    plain, guided = _net(name, False), _net(name, True)
    assert "guidance_input" not in plain.config and not plain.guidance_input
    assert guided.config["guidance_input"] is True
    extra = set(guided.state_dict()) - set(plain.state_dict())
    assert extra and all("guidance_embedder" in k for k in extra)  # the only new parameters
    x, t, d, y = _inputs(name)
    with pytest.raises(ValueError, match="without the guidance input"):
        plain(x, t, d, y, guidance=guide.none(4, "cpu"))
    with pytest.raises(ValueError, match=r"shape \[4, 3\]"):
        guided(x, t, d, y, guidance=torch.ones(4, 2))


@pytest.mark.parametrize("name", NETS)
def test_the_config_rebuilds_the_input_and_old_configs_load_without_it(name):
    guided = _net(name, True)
    spec = network_spec(guided)
    rebuilt = build_network(spec)
    rebuilt.load_state_dict(guided.state_dict())  # strict: same parameters
    assert rebuilt.guidance_input
    x, t, d, y = _inputs(name)
    g = guide.rows(3.0, 0.2, 0.8, 4, "cpu")
    torch.testing.assert_close(rebuilt.eval()(x, t, d, y, guidance=g), guided(x, t, d, y, guidance=g))
    old = network_spec(_net(name, False))  # a spec written before the key existed has none
    assert "guidance_input" not in old["args"]
    assert not build_network(old).guidance_input


def test_wrappers_pass_the_guidance_through():
    model = _net("DiT-Nano", True)
    x, t, d, y = _inputs("DiT-Nano")
    g = guide.rows(5.0, 0.1, 0.6, 4, "cpu")
    want = model(x, t, d, y, guidance=g)
    ema = EMA(model, 0.99, 0)
    torch.testing.assert_close(ema.module(x, t, d, y, guidance=g), want)
    torch.testing.assert_close(copy.deepcopy(model)(x, t, d, y, guidance=g), want)
    compiled = torch.compile(model, backend="eager")
    torch.testing.assert_close(compiled(x, t, d, y, guidance=g), want)
    assert getattr(compiled, "guidance_input", False)  # what the sampler reads


class Counting(torch.nn.Module):
    """Counts the calls and rows of a network and records the guidance it was given."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.calls, self.rows, self.seen = net, 0, 0, []
        self.num_classes, self.guidance_input = net.num_classes, net.guidance_input

    def forward(self, x, t, d, y, **kwargs):
        self.calls += 1
        self.rows += x.shape[0]
        self.seen.append(kwargs.get("guidance"))
        return self.net(x, t, d, y, **kwargs)


def test_the_sampler_feeds_the_scale_in_one_pass_per_step():
    noise, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 3])
    guided = Counting(_net("DiT-Nano", True))
    out = sample(guided, noise, 4, y=y, cfg_scale=6.0, cfg_interval=(0.35, 0.6))
    assert (guided.calls, guided.rows) == (4, 12)  # one pass of the batch per step, no unconditional branch
    torch.testing.assert_close(guided.seen[0], guide.rows(6.0, 0.35, 0.6, 3, "cpu"), rtol=0, atol=0)
    assert torch.isfinite(out).all()
    plain = Counting(_net("DiT-Nano", False))
    plain.guidance_input = False
    sample(plain, noise, 4, y=y, cfg_scale=6.0)
    assert (plain.calls, plain.rows) == (4, 24) and plain.seen[0] is None  # classifier-free: two branches
    with pytest.raises(ValueError, match="guidance interval needs a network with the guidance input"):
        sample(plain, noise, 1, y=y, cfg_scale=6.0, cfg_interval=(0.2, 0.8))
    with pytest.raises(ValueError, match="0 <= lo <= hi <= 1"):
        sample(guided, noise, 1, y=y, cfg_scale=6.0, cfg_interval=(0.8, 0.2))
