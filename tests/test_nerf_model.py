"""The paper model: its fast path against the plain autograd formulation, chunking, registry, checkpoints."""

import dataclasses
import io

import pytest
import torch

from nerfpipe.nerf.chunking import chunk_size, render_image
from nerfpipe.nerf.interface import RayBundle, RenderOutput, SceneBox, photometric_loss
from nerfpipe.nerf.registry import MODELS, build_model, get_model, model_names, register_model
from nerfpipe.nerf.nerf_model import NerfConfig

NDC_BOX = SceneBox("ndc", ((-1.5, -1.5, -1.0), (1.5, 1.5, 1.0)), 0.0, 1.0, False)
TINY = NerfConfig(netdepth=4, netwidth=32, netdepth_fine=4, netwidth_fine=24, skips=(1,), n_samples=12, n_importance=10,
                  raw_noise_std=1.0)


def _rays(n: int, seed: int = 0) -> RayBundle:
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g) * 0.2
    d = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 1.0])
    return RayBundle(o, d, torch.zeros(n, 1), torch.ones(n, 1))


@pytest.mark.parametrize("name", ["nerf", "fast"])
def test_training_noise_comes_from_the_generator_passed_not_the_global_rng(name):
    """The trainer passes each step a generator seeded by (seed, step): the jitter and noise of a training
    render come from it alone, so a step is the same whatever else drew from torch's global RNG."""
    from nerfpipe.nerf.fast import FastConfig

    cfg = TINY if name == "nerf" else FastConfig(voxels_init=16**3, voxels_final=16**3, grow_at=(), samples=24)
    torch.manual_seed(0)
    model = build_model(name, cfg, NDC_BOX)
    rays = _rays(64)
    outs = []
    for global_seed, seed in ((1, 5), (2, 5), (3, 6)):
        torch.manual_seed(global_seed)
        state = torch.random.get_rng_state()
        outs.append(model.render(rays, train=True, generator=torch.Generator().manual_seed(seed)).rgb.detach())
        assert torch.equal(torch.random.get_rng_state(), state)  # nothing drawn from the global RNG
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("use_viewdirs,white", [(True, False), (False, True)])
def test_sparse_field_matches_plain_autograd(use_viewdirs, white):
    box = dataclasses.replace(NDC_BOX, white_background=white)
    cfg = dataclasses.replace(TINY, use_viewdirs=use_viewdirs)
    torch.manual_seed(0)
    fast = build_model("nerf", cfg, box)
    plain = build_model("nerf", dataclasses.replace(cfg, skip_empty=False), box)
    plain.load_state_dict(fast.state_dict())
    rays, target = _rays(48), torch.rand(48, 3, generator=torch.Generator().manual_seed(1))
    results = []
    for model in (fast, plain):
        torch.manual_seed(7)  # same jitter and noise for both
        out = model.render(rays, train=True)
        loss, _ = model.loss(out, target, 0)
        model.zero_grad()
        loss.backward()
        results.append((out, loss, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (out_f, loss_f, g_f), (out_p, loss_p, g_p) = results
    assert torch.allclose(out_f.rgb, out_p.rgb, atol=1e-5)
    assert torch.allclose(out_f.depth, out_p.depth, atol=1e-5)
    assert loss_f.item() == pytest.approx(loss_p.item(), rel=1e-5)
    for name in g_p:
        scale = g_p[name].abs().max().item() + 1e-12
        assert (g_f[name] - g_p[name]).abs().max().item() / scale < 1e-4, name
    # and the fast path really skipped samples: about half have zero density at initialisation
    x = fast.pos_enc(torch.rand(500, 3))
    noise = torch.randn(500, generator=torch.Generator().manual_seed(2))
    dirs = fast.coarse.direction_term(fast.dir_enc(torch.rand(500, 3))) if use_viewdirs else None
    sigma, rgb = fast.coarse.evaluate(x, dirs, 1, noise)
    dead = sigma == 0
    assert 0.2 < dead.float().mean() < 0.8 and torch.all(rgb[dead] == 0)


def test_chunked_rendering_equals_one_call():
    torch.manual_seed(0)
    model = build_model("nerf", TINY, NDC_BOX).eval()
    rays = _rays(100)
    with torch.no_grad():
        whole = model.render(rays, train=False)
    seen = []
    chunked = render_image(model, rays, chunk=17, on_chunk=seen.append)
    assert seen == [17] * 5 + [15]
    assert torch.allclose(whole.rgb, chunked.rgb, atol=1e-6)
    assert torch.allclose(whole.depth, chunked.depth, atol=1e-6)
    assert torch.allclose(whole.aux["rgb_coarse"], chunked.aux["rgb_coarse"], atol=1e-6)
    # deterministic at eval time
    assert torch.equal(render_image(model, rays, chunk=100).rgb, render_image(model, rays, chunk=100).rgb)


def test_chunk_size_is_bounded_by_free_memory():
    model = build_model("nerf", NerfConfig(), NDC_BOX)
    chunk = chunk_size(model, "cpu")
    assert 256 <= chunk <= 4096 and chunk & (chunk - 1) == 0  # capped on a CPU (the fast model's cap is larger)
    # the full model needs ~0.5 MB per ray without autograd: a chunk uses at most a quarter of what is free
    from nerfpipe.nerf.chunking import free_memory_bytes

    assert chunk * model.bytes_per_ray(False) <= 0.25 * free_memory_bytes("cpu") or chunk == 256
    # the fast model still gains at 16,384 rays a call on a CPU, the paper's NeRF does not beyond 4,096
    from nerfpipe.nerf.fast import FastConfig

    fast = build_model("fast", FastConfig(), NDC_BOX)
    assert chunk_size(fast, "cpu") == 16384 or 16384 * fast.bytes_per_ray(False) > 0.25 * free_memory_bytes("cpu")


def test_registry_and_interface():
    assert "nerf" in model_names() and "fast" in model_names()
    entry = get_model("nerf")
    assert entry.config_cls is NerfConfig
    with pytest.raises(KeyError):
        get_model("no-such-model")
    with pytest.raises(TypeError):
        register_model("bad", dict, lambda c, b: None)
    assert "bad" not in MODELS
    model = build_model("nerf", NerfConfig(), NDC_BOX)
    n_params = sum(p.numel() for p in model.parameters())
    # two 8x256 networks with the skip at layer 4 and the view branch: 595,844 parameters each
    assert n_params == 2 * 595_844
    assert model.lr_factor(0, 200_000) == 1.0
    assert model.lr_factor(250_000, 200_000) == pytest.approx(0.1)
    (group,) = model.param_groups(1000)
    assert group["lr"] == 5e-4


def test_loss_kinds_and_psnr_independence():
    pred, target = torch.tensor([[0.5, 0.5, 0.5]]), torch.tensor([[0.7, 0.5, 0.2]])
    assert photometric_loss("mse", pred, target).item() == pytest.approx((0.04 + 0.09) / 3)
    assert photometric_loss("l1", pred, target).item() == pytest.approx(0.5 / 3)
    # smooth_l1 with beta 0.1: |e| >= 0.1 -> |e| - 0.05
    assert photometric_loss("smooth_l1", pred, target).item() == pytest.approx((0.15 + 0.25) / 3)
    model = build_model("nerf", dataclasses.replace(TINY, loss="l1"), NDC_BOX)
    out = RenderOutput(pred, torch.zeros(1), torch.ones(1), {"rgb_coarse": pred})
    loss, stats = model.loss(out, target, 0)
    assert loss.item() == pytest.approx(2 * 0.5 / 3) and stats["loss_fine"] == pytest.approx(0.5 / 3)


def test_state_dict_round_trips_with_weights_only():
    model = build_model("nerf", TINY, NDC_BOX)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "step": 3}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    other = build_model("nerf", TINY, NDC_BOX)
    other.load_state_dict(loaded["model"])
    rays = _rays(8)
    assert torch.equal(render_image(model, rays).rgb, render_image(other, rays).rgb)
