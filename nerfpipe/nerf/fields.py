"""Fields: networks that map an encoded point (and view direction) to density and colour.

:class:`NerfMLP` is the paper's network (Mildenhall et al. 2020, fig. 7): 8 fully connected ReLU
layers of width 256 on the encoded position, with the encoded position concatenated again after
the 5th layer (skip at layer index 4); a linear density head; then, with view directions, a
256-wide linear feature layer concatenated with the encoded direction, one 128-wide ReLU layer and
a linear colour head. Outputs are raw (before the sigmoid on colour and the ReLU on density, which
belong to volume rendering).

The parameters have the reference code's shapes (the skip layer's weight is (256, 63 + 256) with the
position columns first). :meth:`NerfMLP.forward` is the literal formulation with concatenations and
plain autograd, kept as the reference that the tests compare the fast path against.

:meth:`NerfMLP.evaluate` is the fast path used in training and rendering. It never materialises a
concatenation (the skip layer is ``x @ W_x^T + h @ W_h^T``; the direction part of the colour layer
is computed once per ray by :meth:`NerfMLP.direction_term` instead of once per sample), fuses each
layer's bias and ReLU into its matrix product (oneDNN on a CPU), returns density after
the ReLU and colour after the sigmoid, and exploits one exact fact: a sample whose density is 0
the ReLU and colour after the sigmoid, and exploits one exact fact: a sample whose density is 0
(raw density plus noise <= 0) gets weight 0 in volume rendering, so its colour never reaches the
output and no gradient flows through it (the ReLU's derivative is 0 there, and the colour's
gradient is its weight). Such samples skip the colour branch, and the backward pass (a hand-written
one, :class:`_SparseField`) runs only on the rows of the other samples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class NerfMLP(nn.Module):
    def __init__(
        self,
        depth: int = 8,
        width: int = 256,
        pos_dims: int = 63,
        dir_dims: int = 27,
        skips: tuple[int, ...] = (4,),
        use_viewdirs: bool = True,
    ):
        super().__init__()
        self.depth, self.width, self.pos_dims, self.dir_dims = depth, width, pos_dims, dir_dims
        self.skips = tuple(skips)
        if any(not 0 <= k < depth - 1 for k in self.skips):
            raise ValueError(f"skips {skips} must index layers 0..{depth - 2}")
        self.use_viewdirs = use_viewdirs
        layers = [nn.Linear(pos_dims, width)]
        for i in range(depth - 1):
            layers.append(nn.Linear(width + (pos_dims if i in self.skips else 0), width))
        self.trunk = nn.ModuleList(layers)
        if use_viewdirs:
            self.sigma_head = nn.Linear(width, 1)
            self.feature = nn.Linear(width, width)
            self.view = nn.Linear(width + dir_dims, width // 2)
            self.rgb_head = nn.Linear(width // 2, 3)
        else:
            self.output = nn.Linear(width, 4)

    def forward(self, x: Tensor, d: Tensor | None) -> tuple[Tensor, Tensor]:
        """The literal formulation (concatenations as in the paper's figure), plain autograd.

        x (points, pos_dims) encoded positions, d (points, dir_dims) encoded view directions (None
        without them) -> (sigma_raw (points,), rgb_raw (points, 3)).
        """
        h = x
        for i, layer in enumerate(self.trunk):
            h = torch.relu(layer(h))
            if i in self.skips:
                h = torch.cat([x, h], dim=-1)
        if not self.use_viewdirs:
            out = self.output(h)
            return out[:, 3], out[:, :3]
        sigma = self.sigma_head(h)[:, 0]
        v = torch.relu(self.view(torch.cat([self.feature(h), d], dim=-1)))
        return sigma, self.rgb_head(v)

    def direction_term(self, d: Tensor) -> Tensor:
        """d (rays, dir_dims) encoded unit view directions -> (rays, width // 2), the direction's
        share of the colour layer's pre-activation (its bias included)."""
        return torch.addmm(self.view.bias, d, self.view.weight[:, self.width :].t())

    def parameter_list(self) -> list[Tensor]:
        """The parameters in the order :class:`_SparseField` takes them."""
        params = []
        for layer in self.trunk:
            params += [layer.weight, layer.bias]
        if self.use_viewdirs:
            params += [self.sigma_head.weight, self.sigma_head.bias, self.feature.weight, self.feature.bias,
                       self.view.weight, self.rgb_head.weight, self.rgb_head.bias]
        else:
            params += [self.output.weight, self.output.bias]
        return params

    def evaluate(self, x: Tensor, dir_term: Tensor | None, samples_per_ray: int, noise: Tensor | None) -> tuple[Tensor, Tensor]:
        """Density and colour at every sample, skipping the work that cannot change the result.

        x (points, pos_dims) encoded positions, points = rays * samples_per_ray in ray-major order;
        dir_term (rays, width // 2) from :meth:`direction_term` (None without view directions);
        noise (points,) added to the raw density, or None.
        Returns sigma = relu(raw + noise) (points,) and rgb = sigmoid(raw colour) (points, 3), with
        rgb 0 wherever sigma is 0.
        """
        shape = _Shape(self.depth, self.width, self.pos_dims, self.skips, self.use_viewdirs, samples_per_ray)
        params = self.parameter_list()
        needs_grad = torch.is_grad_enabled() and (
            any(p.requires_grad for p in params) or (dir_term is not None and dir_term.requires_grad)
        )
        if needs_grad:
            return _SparseField.apply(shape, x, dir_term, noise, *params)
        sigma, rgb, _ = _field_forward(shape, x, dir_term, noise, params, keep=False)
        return sigma, rgb


class _Shape(tuple):
    """(depth, width, pos_dims, skips, use_viewdirs, samples_per_ray) of a NerfMLP call."""

    def __new__(cls, depth, width, pos_dims, skips, use_viewdirs, samples_per_ray):
        return super().__new__(cls, (depth, width, pos_dims, tuple(skips), use_viewdirs, samples_per_ray))


def _mkldnn_linear_relu_available() -> bool:
    try:
        x = torch.ones(2, 3)
        out = torch.ops.mkldnn._linear_pointwise(x, torch.ones(4, 3), torch.zeros(4), "relu", [], "")
        return bool(torch.equal(out, torch.full((2, 4), 3.0)))
    except (AttributeError, RuntimeError):
        return False


_MKLDNN_LINEAR_RELU = _mkldnn_linear_relu_available()


def linear_relu(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """relu(x @ weight^T + bias) (rows, out), as one oneDNN call on a CPU (no bias broadcast, no
    separate ReLU pass) and addmm + in-place ReLU elsewhere. No autograd."""
    if _MKLDNN_LINEAR_RELU and x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[0] > 0:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu", [], "")
    return torch.relu_(torch.addmm(bias, x, weight.t()))


def _field_forward(shape: _Shape, x: Tensor, dir_term: Tensor | None, noise: Tensor | None, params: list[Tensor], keep: bool):
    """The forward pass of :meth:`NerfMLP.evaluate`; with ``keep`` also what the backward pass needs."""
    depth, width, pos_dims, skips, use_viewdirs, spr = shape
    hs = []
    h = linear_relu(x, params[0], params[1])
    hs.append(h)
    for i in range(1, depth):
        w, b = params[2 * i], params[2 * i + 1]
        if i - 1 in skips:
            pre = torch.addmm(b, x, w[:, :pos_dims].t())
            h = torch.relu_(pre.addmm_(h, w[:, pos_dims:].t()))
        else:
            h = linear_relu(h, w, b)
        if keep:
            hs.append(h)
    heads = params[2 * depth :]
    n = x.shape[0]
    if use_viewdirs:
        ws, bs, wf, bf, wv, wr, br = heads
        raw = torch.addmm(bs, h, ws.t())[:, 0]
    else:
        wo, bo = heads
        raw = torch.addmm(bo[3:], h, wo[3:].t())[:, 0]
    s = raw if noise is None else raw + noise
    alive = torch.nonzero(s > 0).squeeze(1)  # (alive,)
    sigma = torch.relu(s)
    h_a = h.index_select(0, alive)  # (alive, width)
    if use_viewdirs:
        feat = torch.addmm(bf, h_a, wf.t())  # (alive, width)
        ray = torch.div(alive, spr, rounding_mode="floor")
        v = torch.relu_(torch.addmm(dir_term.index_select(0, ray), feat, wv[:, :width].t()))  # (alive, width / 2)
        c = torch.sigmoid(torch.addmm(br, v, wr.t()))  # (alive, 3)
        saved = (hs, alive, h_a, feat, ray, v, c)
    else:
        c = torch.sigmoid(torch.addmm(bo[:3], h_a, wo[:3].t()))
        saved = (hs, alive, h_a, None, None, None, c)
    rgb = torch.zeros(n, 3, dtype=x.dtype, device=x.device).index_copy_(0, alive, c)
    return sigma, rgb, (saved if keep else None)


class _SparseField(torch.autograd.Function):
    """:func:`_field_forward` with a backward pass over the rows of non-zero density only (exact)."""

    @staticmethod
    def forward(ctx, shape, x, dir_term, noise, *params):
        sigma, rgb, saved = _field_forward(shape, x, dir_term, noise, list(params), keep=True)
        ctx.shape = shape
        ctx.saved = saved
        ctx.dir_rows = None if dir_term is None else dir_term.shape[0]
        ctx.save_for_backward(x, *params)
        return sigma, rgb

    @staticmethod
    def backward(ctx, grad_sigma, grad_rgb):
        depth, width, pos_dims, skips, use_viewdirs, _spr = ctx.shape
        x, *params = ctx.saved_tensors
        hs, alive, h_a, feat, ray, v, c = ctx.saved
        grads: list[Tensor | None] = [None] * len(params)
        g_sigma = grad_sigma.index_select(0, alive)  # (alive,): relu'(raw + noise) = 1 on these rows
        g_c = grad_rgb.index_select(0, alive) * c * (1.0 - c)  # (alive, 3) through the sigmoid
        heads = 2 * depth
        d_dir = None
        if use_viewdirs:
            ws, bs, wf, bf, wv, wr, br = params[heads:]
            grads[heads + 5] = g_c.t() @ v
            grads[heads + 6] = g_c.sum(0)
            gv = torch.ops.aten.threshold_backward(g_c @ wr, v, 0)  # (alive, width / 2)
            dwv = torch.zeros_like(wv)
            dwv[:, :width] = gv.t() @ feat
            grads[heads + 4] = dwv
            if ctx.needs_input_grad[2]:
                d_dir = torch.zeros(ctx.dir_rows, gv.shape[1], dtype=gv.dtype, device=gv.device).index_add_(0, ray, gv)
            g_feat = gv @ wv[:, :width]  # (alive, width)
            grads[heads + 2] = g_feat.t() @ h_a
            grads[heads + 3] = g_feat.sum(0)
            gh = g_feat @ wf
            gh.addr_(g_sigma, ws[0])
            grads[heads] = (g_sigma[None] @ h_a)
            grads[heads + 1] = g_sigma.sum().reshape(1)
        else:
            wo, bo = params[heads:]
            gh = g_c @ wo[:3]
            gh.addr_(g_sigma, wo[3])
            dwo = torch.empty_like(wo)
            dwo[:3] = g_c.t() @ h_a
            dwo[3] = g_sigma @ h_a
            grads[heads] = dwo
            grads[heads + 1] = torch.cat([g_c.sum(0), g_sigma.sum().reshape(1)])
        x_a = x.index_select(0, alive)
        out_a = h_a  # this layer's output rows
        for i in range(depth - 1, -1, -1):
            w = params[2 * i]
            g_pre = torch.ops.aten.threshold_backward(gh, out_a, 0)
            inp = hs[i - 1].index_select(0, alive) if i > 0 else x_a
            if i > 0 and i - 1 in skips:
                grads[2 * i] = torch.cat([g_pre.t() @ x_a, g_pre.t() @ inp], dim=1)
                if i > 0:
                    gh = g_pre @ w[:, pos_dims:]
            else:
                grads[2 * i] = g_pre.t() @ inp
                if i > 0:
                    gh = g_pre @ w
            grads[2 * i + 1] = g_pre.sum(0)
            out_a = inp
        ctx.saved = None
        return (None, None, d_dir, None, *grads)
