"""Incremental re-inference after a local change of the input, exact (torch.fx).

Krypton (Nakandala, Kumar & Papakonstantinou, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations", SIGMOD 2019, https://arxiv.org/abs/1904.03356): the clean
image's output of every node of the model's graph is kept; for a batch of copies of the image
that differ from it in one rectangle each, only the region each copy changes is recomputed,
layer by layer, and the rest is read from the clean outputs. Occlusion
(`convlens.techniques.occlusion.occlusion`) is its user.

The incremental region of a conv/pool layer (kernel ``k``, stride ``s``, padding ``p``, dilation
``d``) whose input changed in rows ``[a, a + h)`` is, per axis::

    lo = ceil((a + p - d (k - 1)) / s),   hi = floor((a + h - 1 + p) / s)

clipped to the output; all copies of a batch share one rectangle size (the largest, shifted
inside the map at the borders). It is recomputed by running the layer with ``padding=0`` on the
input crop rows ``[lo s - p, hi s - p + d (k - 1)]`` read from the zero- (max-pool: -inf-) padded
clean input with the changed region pasted in. Pointwise layers (ReLU and friends, batch norm and dropout in
eval mode, arithmetic with constants) keep the region; an elementwise sum of two changed tensors
(a residual connection) and a channel concatenation take the union of their regions. Any other
operation (flatten, linear, adaptive pooling, anything unknown) gets the full tensors and runs as
usual from there on, so an unknown op costs speed, never correctness.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import capture


class _Clean:
    """An x-dependent value equal to the clean image's (nothing changed it)."""


CLEAN = _Clean()


@dataclass
class _Dirty:
    """A (B, C, H, W) value equal to the clean one except in one rectangle per copy: rows
    ``y[b] : y[b] + h`` and columns ``x[b] : x[b] + w`` hold ``patch[b]`` (one size for the
    batch). The values really changed only in rows ``lo_y[b] ..= hi_y[b]`` and columns
    ``lo_x[b] ..= hi_x[b]`` (inside the rectangle); the rest of the patch was recomputed
    because the batch shares one size, and equals the clean values (to rounding). The next
    layer's region grows from these bounds, not from the patch, so that one copy's larger
    region does not spread to the others layer after layer."""

    patch: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    lo_y: torch.Tensor
    hi_y: torch.Tensor
    lo_x: torch.Tensor
    hi_x: torch.Tensor

    def like(self, patch: torch.Tensor) -> "_Dirty":
        """The same region holding another patch (after a pointwise op)."""
        return _Dirty(patch, self.y, self.x, self.lo_y, self.hi_y, self.lo_x, self.hi_x)


@dataclass
class _Full:
    """A value computed in full for every sample (a tensor, or anything else)."""

    value: Any


_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Identity, nn.LocalResponseNorm,
)
_DROPOUT = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_POINTWISE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.elu, F.selu, F.mish,
    F.hardtanh, F.hardswish, F.hardsigmoid, F.softplus, torch.sigmoid, torch.tanh, F.sigmoid,
    F.tanh, torch.abs, torch.exp, torch.neg, operator.neg, torch.clamp, torch.clip,
}
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp",
                      "clamp_", "clip", "contiguous", "abs", "neg", "exp"}
_BINARY_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd,
                     operator.isub, operator.imul, operator.itruediv, torch.add, torch.sub,
                     torch.mul, torch.div, torch.maximum, torch.minimum}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


def _axis(v, i: int) -> int:
    return int(v[i]) if isinstance(v, (tuple, list)) else int(v)


class IncrementalEngine:
    """Krypton-style incremental inference over a torch.fx trace of the model.

    ``prepare(x1)`` runs the clean image once and keeps every node's output;
    ``run(patch, y, x)`` evaluates a batch of copies of it whose input differs only in the
    rectangles ``patch[b]`` at ``(y[b], x[b])``, recomputing only what changed (see the module
    docstring); returns the logits ``(B, K)`` and the watched layer's total activation.
    """

    def __init__(self, gm, nodes, layer_node):
        self.gm = gm
        self.nodes = nodes
        self.modules = dict(gm.named_modules())
        self.layer_node = layer_node
        self.clean: dict[Any, Any] = {}
        self.xdep: set = set()
        self.aliasing: set = set()
        self._padded: dict = {}
        self.macs_done = 0.0
        self.macs_full = 0.0
        self.incremental_nodes = 0
        self.full_ops: set[str] = set()

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def build(cls, model: nn.Module, x1: torch.Tensor, layer: str | None):
        """An engine for `model`, or ``(None, reason)`` when it cannot be traced or checked."""
        import torch.fx as fx

        try:
            gm = fx.symbolic_trace(model)
        except Exception as e:  # anything fx cannot trace: data-dependent control flow, ...
            return None, f"torch.fx cannot trace {type(model).__name__}: " \
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        nodes = list(gm.graph.nodes)
        if sum(nd.op == "placeholder" for nd in nodes) != 1:
            return None, "the model takes more than one input"
        layer_node = None
        if layer is not None:
            layer_node = cls._find_layer(nodes, layer)
            if layer_node is None:
                return None, f"layer {layer!r} is not a node of the traced graph"
        eng = cls(gm, nodes, layer_node)
        try:
            eng.prepare(x1)
        except Exception as e:  # an op that runs in the model but not node by node
            return None, f"the traced graph fails to run: {type(e).__name__}: {e}"
        ok, why = eng.check(model, x1, layer)
        return (eng, None) if ok else (None, why)

    @staticmethod
    def _find_layer(nodes, layer: str):
        """The node whose output is `layer`'s: its last call, or for a container the last call
        of any module inside it (checked against a hook in `prepare`)."""
        found = None
        for nd in nodes:
            if nd.op == "call_module" and (nd.target == layer or nd.target.startswith(layer + ".")):
                found = nd
        return found

    # -- the clean pass --------------------------------------------------------------------
    def prepare(self, x1: torch.Tensor) -> None:
        """Run the clean image ``(1, C, H, W)`` through the graph, keeping every node's output."""
        self._padded.clear()
        self.xdep.clear()
        self.aliasing.clear()
        env: dict = {}
        for nd in self.nodes:
            if nd.op == "placeholder":
                env[nd] = x1
                self.xdep.add(nd)
                continue
            if nd.op == "output":
                env[nd] = _map(nd.args[0], env)
                break
            args = _map(nd.args, env, clone=True)  # no op may change a kept value in place
            kwargs = _map(nd.kwargs, env, clone=True)
            val = self._call(nd, args, kwargs)
            if _shares_storage(val, args, kwargs):
                self.aliasing.add(nd)  # in place or a view: feed it private copies later
            env[nd] = val
            if any(a in self.xdep for a in nd.all_input_nodes):
                self.xdep.add(nd)
        self.clean = env

    def check(self, model: nn.Module, x1: torch.Tensor,
              layer: str | None) -> tuple[bool, str | None]:
        """The traced graph must compute what the model computes (and what a hook on `layer`
        sees); otherwise the engine is not used."""
        out = self.clean[self.nodes[-1]]
        if layer is not None:
            with capture(model, layer) as cap:
                ref = model(x1)
            want = cap[layer]
            got = self.clean[self.layer_node]
            if not (isinstance(got, torch.Tensor) and got.shape == want.shape
                    and torch.allclose(got, want, rtol=1e-4, atol=1e-5)):
                return False, f"layer {layer!r} does not match a node of the traced graph"
        else:
            ref = model(x1)
        if not (isinstance(out, torch.Tensor) and out.shape == ref.shape
                and torch.allclose(out, ref, rtol=1e-4, atol=1e-5)):
            return False, "the traced graph does not reproduce the model's output"
        return True, None

    def _call(self, nd, args, kwargs):
        if nd.op == "call_module":
            return self.modules[nd.target](*args, **kwargs)
        if nd.op == "call_function":
            return nd.target(*args, **kwargs)
        if nd.op == "call_method":
            return getattr(args[0], nd.target)(*args[1:], **kwargs)
        if nd.op == "get_attr":
            obj = self.gm
            for part in nd.target.split("."):
                obj = getattr(obj, part)
            return obj
        raise RuntimeError(f"unexpected fx node {nd.op}")

    # -- a batch of occluded copies --------------------------------------------------------
    def run(self, patch: torch.Tensor, y: torch.Tensor, x: torch.Tensor, tau: float | None = None,
            channel: int | None = None):
        bsz = patch.shape[0]
        env: dict = {}
        result = None
        for nd in self.nodes:
            if nd.op == "placeholder":
                h, w = patch.shape[2:]
                env[nd] = _Dirty(patch, y, x, y, y + h - 1, x, x + w - 1)
                continue
            if nd.op == "output":
                result = self._full(nd.args[0], env, bsz)
                break
            if nd not in self.xdep:
                env[nd] = CLEAN
                continue
            ins = nd.all_input_nodes
            if all(isinstance(env.get(a, CLEAN), _Clean) for a in ins):
                env[nd] = CLEAN
                continue
            val = self._step(nd, env, bsz, tau)
            if isinstance(val, _Dirty) and val.patch.numel() == 0:
                val = CLEAN
            env[nd] = val
        act = None
        if self.layer_node is not None and channel is not None:
            act = self._total(self.layer_node, env[self.layer_node], channel, bsz)
        return result, act

    def _total(self, nd, val, ch, bsz):
        clean = self.clean[nd]
        base = channel_total(clean, ch)  # (1,)
        if isinstance(val, _Clean):
            return base.expand(bsz).clone()
        if isinstance(val, _Full):
            return channel_total(val.value, ch)
        # clean sum - clean values under the patch + patch values
        h, w = val.patch.shape[2:]
        under = self._gather(nd, None, val.y[:, None] + torch.arange(h, device=val.y.device),
                             val.x[:, None] + torch.arange(w, device=val.x.device), (0, 0), 0.0)
        return (base - under[:, ch].reshape(bsz, -1).sum(1)
                + val.patch[:, ch].reshape(bsz, -1).sum(1))

    def _step(self, nd, env, bsz: int, tau: float | None):
        """One node with at least one changed input."""
        op = nd.op
        if op == "call_module":
            mod = self.modules[nd.target]
            src = nd.args[0] if nd.args else None
            if len(nd.args) == 1 and not nd.kwargs and isinstance(env.get(src), _Dirty):
                spatial = _spatial(mod)
                if spatial is not None:
                    return self._spatial_step(nd, src, env[src], mod, spatial, bsz, tau)
                if _pointwise_module(mod, self.clean[src]):
                    d = env[src]
                    patch = d.patch.clone() if self._must_copy(nd, src) else d.patch
                    self.incremental_nodes += 1
                    return d.like(mod(patch))
        elif op in ("call_function", "call_method"):
            target = nd.target
            if (op == "call_function" and target in _POINTWISE_FUNCTIONS) or \
                    (op == "call_method" and target in _POINTWISE_METHODS):
                out = self._pointwise(nd, env)
                if out is not None:
                    return out
            if (op == "call_function" and target in _BINARY_FUNCTIONS) or \
                    (op == "call_method" and target in _BINARY_METHODS):
                out = self._pointwise(nd, env)
                if out is None:
                    out = self._union(nd, env, list(nd.args), bsz, tau)
                if out is not None:
                    return out
            if op == "call_function" and target is torch.cat:
                out = self._cat(nd, env, bsz, tau)
                if out is not None:
                    return out
        return self._run_full(nd, env, bsz)

    def _must_copy(self, nd, src) -> bool:
        """An op that may write into its input must get a copy when the input is read again."""
        return nd in self.aliasing or _inplace(nd, self.modules) or len(src.users) > 1

    # -- kinds of nodes --------------------------------------------------------------------
    def _run_full(self, nd, env, bsz):
        """Unknown op (or a full-size region): full tensors in, full value out."""
        copy = nd in self.aliasing or _inplace(nd, self.modules)
        args = tuple(self._full_arg(a, env, bsz, copy) for a in nd.args)
        kwargs = {k: self._full_arg(v, env, bsz, copy) for k, v in nd.kwargs.items()}
        val = self._call(nd, args, kwargs)
        label = nd.target if isinstance(nd.target, str) else \
            getattr(nd.target, "__name__", str(nd.target))
        if nd.op == "call_module":
            label = f"{nd.target} ({type(self.modules[nd.target]).__name__})"
            self._count_full(self.modules[nd.target], nd, bsz)
        if any(isinstance(env.get(a), _Dirty) for a in nd.all_input_nodes):
            self.full_ops.add(str(label))
        return _Full(val)

    def _full_arg(self, a, env, bsz, copy):
        import torch.fx as fx
        if isinstance(a, fx.Node):
            return self._full(a, env, bsz, copy)
        if isinstance(a, (list, tuple)):
            return type(a)(self._full_arg(v, env, bsz, copy) for v in a)
        if isinstance(a, dict):
            return {k: self._full_arg(v, env, bsz, copy) for k, v in a.items()}
        return a

    def _full(self, a, env, bsz, copy: bool = False):
        """The full value of node `a` for the batch."""
        import torch.fx as fx
        if not isinstance(a, fx.Node):
            return self._full_arg(a, env, bsz, copy)
        v = env.get(a, CLEAN)
        if isinstance(v, _Full):
            val = v.value
            return val.clone() if copy and isinstance(val, torch.Tensor) else val
        clean = self.clean[a]
        if a not in self.xdep or not isinstance(clean, torch.Tensor):
            return clean.clone() if copy and isinstance(clean, torch.Tensor) else clean
        full = clean.expand(bsz, *clean.shape[1:]).clone()
        if isinstance(v, _Dirty):
            h, w = v.patch.shape[2:]
            dev = v.y.device
            rows = v.y[:, None] + torch.arange(h, device=dev)
            cols = v.x[:, None] + torch.arange(w, device=dev)
            b = torch.arange(bsz, device=dev)
            full.permute(0, 2, 3, 1)[b[:, None, None], rows[:, :, None], cols[:, None, :]] = \
                v.patch.permute(0, 2, 3, 1).to(full.dtype)
        return full

    def _pointwise(self, nd, env):
        """f(changed tensor, constants...) with f elementwise: the same rectangle."""
        import torch.fx as fx
        ins = nd.all_input_nodes
        dirty = [a for a in ins if isinstance(env.get(a), _Dirty)]
        if len(dirty) != 1 or dirty[0] not in nd.args:
            return None
        for a in ins:
            if a is not dirty[0] and (a in self.xdep or not _spatially_constant(self.clean[a])):
                return None
        if any(isinstance(v, (list, tuple, dict, slice)) for v in nd.args) or \
                any(isinstance(v, (fx.Node, list, tuple, dict)) for v in nd.kwargs.values()):
            return None
        d = env[dirty[0]]
        patch = d.patch.clone() if self._must_copy(nd, dirty[0]) else d.patch
        args = tuple(patch if a is dirty[0] else self.clean[a] if isinstance(a, fx.Node) else a
                     for a in nd.args)
        self.incremental_nodes += 1
        return d.like(self._call(nd, args, dict(nd.kwargs)))

    def _operand_rects(self, nodes, env, shape4):
        """Changed bounds ``(lo_y, hi_y, lo_x, hi_x)`` per copy of the changed operands; None
        if one is full or not a map of the same size."""
        rects = []
        for a in nodes:
            v = env.get(a, CLEAN)
            if isinstance(v, _Full):
                return None
            c = self.clean[a]
            if not isinstance(c, torch.Tensor) or c.dim() != 4:
                return None
            if shape4 is not None and c.shape[2:] != shape4:
                return None
            if isinstance(v, _Dirty):
                rects.append((v.lo_y, v.hi_y, v.lo_x, v.hi_x))
        return rects

    def _union(self, nd, env, args, bsz, tau):
        """Elementwise op of changed tensors (a residual sum): over the union of their
        rectangles, reading each operand there (clean values with its patch pasted in)."""
        import torch.fx as fx
        if len(args) != 2 or nd.kwargs and set(nd.kwargs) - {"alpha"}:
            return None
        xnodes = [a for a in args if isinstance(a, fx.Node) and a in self.xdep]
        for a in args:
            if not isinstance(a, (fx.Node, int, float)):
                return None
            if isinstance(a, fx.Node) and a not in self.xdep and \
                    not _spatially_constant(self.clean[a]):
                return None
        shapes = {tuple(self.clean[a].shape) if isinstance(self.clean[a], torch.Tensor) else None
                  for a in xnodes}
        if len(shapes) != 1 or None in shapes:
            return None  # broadcasting between changed tensors: run in full
        shape4 = self.clean[xnodes[0]].shape[2:]
        rects = self._operand_rects(xnodes, env, shape4)
        if not rects:
            return None
        box = self._fit_union(rects, shape4, tau)
        if box is None:
            return None  # covers the whole map: run in full
        (ys, hh), (xs, ww), bounds = box
        rows = ys[:, None] + torch.arange(hh, device=ys.device)
        cols = xs[:, None] + torch.arange(ww, device=xs.device)
        vals = []
        for a in args:
            if isinstance(a, fx.Node) and a in self.xdep:
                vals.append(self._gather(a, _dirty_or_none(env, a), rows, cols, (0, 0), 0.0))
            elif isinstance(a, fx.Node):
                vals.append(self.clean[a])
            else:
                vals.append(a)
        self.incremental_nodes += 1
        return _Dirty(self._call(nd, tuple(vals), dict(nd.kwargs)), ys, xs, *bounds)

    def _cat(self, nd, env, bsz, tau):
        import torch.fx as fx
        tensors = nd.args[0] if nd.args else nd.kwargs.get("tensors")
        dim = nd.args[1] if len(nd.args) > 1 else nd.kwargs.get("dim", 0)
        if not isinstance(tensors, (list, tuple)) or \
                not all(isinstance(t, fx.Node) for t in tensors):
            return None
        if any(t not in self.xdep for t in tensors):
            return None
        c0 = self.clean[tensors[0]]
        if not isinstance(c0, torch.Tensor) or c0.dim() != 4 or dim not in (1, -3):
            return None
        shape4 = c0.shape[2:]
        rects = self._operand_rects(tensors, env, shape4)
        if not rects:
            return None
        box = self._fit_union(rects, shape4, tau)
        if box is None:
            return None
        (ys, hh), (xs, ww), bounds = box
        rows = ys[:, None] + torch.arange(hh, device=ys.device)
        cols = xs[:, None] + torch.arange(ww, device=xs.device)
        vals = [self._gather(t, _dirty_or_none(env, t), rows, cols, (0, 0), 0.0) for t in tensors]
        self.incremental_nodes += 1
        return _Dirty(torch.cat(vals, 1), ys, xs, *bounds)

    def _fit_union(self, rects, shape4, tau):
        """The batch rectangle holding every copy's union of changed bounds (capped by tau),
        and those bounds; None when it is the whole map."""
        h, w = shape4
        lo_y, hi_y = _cap(torch.stack([r[0] for r in rects]).amin(0),
                          torch.stack([r[1] for r in rects]).amax(0), h, tau)
        lo_x, hi_x = _cap(torch.stack([r[2] for r in rects]).amin(0),
                          torch.stack([r[3] for r in rects]).amax(0), w, tau)
        ry, rx = _fit(lo_y, hi_y, h), _fit(lo_x, hi_x, w)
        if ry[1] >= h and rx[1] >= w:
            return None
        return ry, rx, (lo_y, hi_y, lo_x, hi_x)

    def _spatial_step(self, nd, src, d: _Dirty, mod, spatial, bsz, tau):
        """Conv / pool: the output rectangle the patch can change, computed from an input crop."""
        (ky, sy, py, dy), (kx, sx, px, dx), pad_value, fn = spatial
        clean_in = self.clean[src]
        clean_out = self.clean[nd]
        if clean_in.dim() != 4 or clean_out.dim() != 4:
            return self._run_full_node(nd, src, d, bsz)
        hin, win = clean_in.shape[2:]
        hout, wout = clean_out.shape[2:]
        # Outputs whose window meets the changed inputs, capped by tau (approximate mode).
        loy, hiy = _cap(*_out_range(d.lo_y, d.hi_y - d.lo_y + 1, ky, sy, py, dy, hout), hout, tau)
        lox, hix = _cap(*_out_range(d.lo_x, d.hi_x - d.lo_x + 1, kx, sx, px, dx, wout), wout, tau)
        ys, sh = _fit(loy, hiy, hout)
        xs, sw = _fit(lox, hix, wout)
        macs_per_out = _macs_per_output(mod)
        self.macs_full += macs_per_out * hout * wout * bsz
        if sh >= hout and sw >= wout:  # the whole map changes: run the layer as usual
            return self._run_full_node(nd, src, d, bsz, counted=True)
        self.macs_done += macs_per_out * sh * sw * bsz
        ly = (sh - 1) * sy + dy * (ky - 1) + 1
        lx = (sw - 1) * sx + dx * (kx - 1) + 1
        dev = d.y.device
        rows = ys[:, None] * sy - py + torch.arange(ly, device=dev)
        cols = xs[:, None] * sx - px + torch.arange(lx, device=dev)
        crop = self._gather(src, d, rows, cols, (py, px), pad_value)
        out = fn(crop)
        self.incremental_nodes += 1
        return _Dirty(out, ys, xs, loy, hiy, lox, hix)

    def _run_full_node(self, nd, src, d, bsz, counted: bool = False):
        mod = self.modules[nd.target]
        self.full_ops.add(f"{nd.target} ({type(mod).__name__}, whole map)")
        full_in = self._full(src, {src: d}, bsz)
        if not counted:
            self._count_full(mod, nd, bsz)
        else:
            self.macs_done += _macs_per_output(mod) * _spatial_numel(self.clean[nd]) * bsz
        return _Full(mod(full_in))

    def _count_full(self, mod, nd, bsz):
        m = _macs_per_output(mod)
        if m:
            n = _spatial_numel(self.clean[nd]) if isinstance(mod, nn.Conv2d) else 1
            self.macs_full += m * n * bsz
            self.macs_done += m * n * bsz

    def _gather(self, nd, d: _Dirty | None, rows, cols, pad, pad_value) -> torch.Tensor:
        """``(B, C, L, L')``: node `nd`'s value at rows ``rows[b]`` and columns ``cols[b]``
        (``(B, L)``, ``(B, L')``, may reach ``pad`` beyond the border, read as `pad_value`):
        the clean output with sample ``b``'s patch pasted in."""
        key = (nd, pad, pad_value)
        padded = self._padded.get(key)
        if padded is None:
            c = self.clean[nd]
            py, px = pad
            if py or px:
                c = F.pad(c, (px, px, py, py), value=pad_value)
            padded = c[0].permute(1, 2, 0).contiguous()  # (H + 2py, W + 2px, C): rows gather fast
            self._padded[key] = padded
        py, px = pad
        base = padded[(rows + py)[:, :, None], (cols + px)[:, None, :]]  # (B, L, L', C)
        if d is not None:
            h, w = d.patch.shape[2:]
            b = torch.arange(rows.shape[0], device=rows.device)
            oy, ox = d.y - rows[:, 0], d.x - cols[:, 0]  # patch corner inside the crop
            holds = (oy >= 0) & (oy + h <= rows.shape[1]) & (ox >= 0) & (ox + w <= cols.shape[1])
            if bool(holds.all()):
                # The usual case, the crop holds the whole patch: paste it.
                ar_y = oy[:, None] + torch.arange(h, device=rows.device)
                ar_x = ox[:, None] + torch.arange(w, device=rows.device)
                base[b[:, None, None], ar_y[:, :, None], ar_x[:, None, :]] = \
                    d.patch.permute(0, 2, 3, 1).to(base.dtype)
            else:  # the crop holds part of the patch: read element by element
                pr = rows - d.y[:, None]
                pc = cols - d.x[:, None]
                inside = ((pr >= 0) & (pr < h))[:, :, None] & ((pc >= 0) & (pc < w))[:, None, :]
                got = d.patch.permute(0, 2, 3, 1)[b[:, None, None], pr.clamp(0, h - 1)[:, :, None],
                                                   pc.clamp(0, w - 1)[:, None, :]]
                base = torch.where(inside[..., None], got.to(base.dtype), base)
        return base.permute(0, 3, 1, 2)


def _map(a, env, clone: bool = False):
    import torch.fx as fx

    if isinstance(a, fx.Node):
        v = env[a]
        return v.clone() if clone and isinstance(v, torch.Tensor) else v
    if isinstance(a, (list, tuple)):
        return type(a)(_map(v, env, clone) for v in a)
    if isinstance(a, dict):
        return {k: _map(v, env, clone) for k, v in a.items()}
    if isinstance(a, slice):
        return slice(_map(a.start, env), _map(a.stop, env), _map(a.step, env))
    return a


def _shares_storage(val, args, kwargs) -> bool:
    if not isinstance(val, torch.Tensor):
        return False
    ptr = val.untyped_storage().data_ptr()
    found = []

    def walk(a):
        if isinstance(a, torch.Tensor):
            found.append(a.untyped_storage().data_ptr() == ptr)
        elif isinstance(a, (list, tuple)):
            for v in a:
                walk(v)
        elif isinstance(a, dict):
            for v in a.values():
                walk(v)
    walk(args)
    walk(kwargs)
    return any(found)


def _inplace(nd, modules) -> bool:
    if nd.op == "call_module":
        return bool(getattr(modules[nd.target], "inplace", False))
    if nd.op == "call_method":
        return nd.target.endswith("_") and not nd.target.endswith("__")
    if nd.op == "call_function":
        return nd.target in _INPLACE_FUNCTIONS or nd.kwargs.get("inplace") is True
    return False


def _dirty_or_none(env, nd) -> _Dirty | None:
    v = env.get(nd)
    return v if isinstance(v, _Dirty) else None


def _pointwise_module(mod: nn.Module, clean_in) -> bool:
    """Layers that act on each position alone (in eval mode): the changed region stays."""
    if isinstance(mod, _POINTWISE_MODULES):
        return True
    if isinstance(mod, _DROPOUT):
        return not mod.training
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):  # eval mode: a per-channel affine map
        return (not mod.training and mod.running_mean is not None
                and isinstance(clean_in, torch.Tensor) and clean_in.dim() == 4)
    return False


def _spatially_constant(v) -> bool:
    """A constant operand that broadcasts the same value to every position (a scalar or a
    per-channel vector), so that an elementwise op with it keeps the changed region."""
    if not isinstance(v, torch.Tensor):
        return isinstance(v, (int, float, bool)) or v is None
    return v.numel() == 1 or (v.dim() >= 2 and v.shape[-1] == 1 and v.shape[-2] == 1
                              and (v.dim() < 4 or v.shape[0] == 1))


def _spatial(mod: nn.Module):
    """((k, s, p, d) for y, the same for x, padding value, f(crop)) for conv/pool layers that
    the incremental engine computes on crops; None for anything else."""
    if type(mod) is nn.Conv2d:
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            return None
        k, s, p, d = mod.kernel_size, mod.stride, mod.padding, mod.dilation
        fn = lambda crop: F.conv2d(crop, mod.weight, mod.bias, s, 0, d, mod.groups)  # noqa: E731
        pad_value = 0.0
    elif type(mod) is nn.MaxPool2d:
        if mod.ceil_mode or mod.return_indices:
            return None
        k, p, d = mod.kernel_size, mod.padding, mod.dilation
        s = mod.stride if mod.stride is not None else k
        fn = lambda crop: F.max_pool2d(crop, k, s, 0, d)  # noqa: E731
        pad_value = -math.inf
    elif type(mod) is nn.AvgPool2d:
        padded = _axis(mod.padding, 0) + _axis(mod.padding, 1) > 0
        if mod.ceil_mode or (padded and not mod.count_include_pad):
            return None  # the divisor would depend on the position
        k, p = mod.kernel_size, mod.padding
        s = mod.stride if mod.stride is not None else k
        d = 1
        fn = lambda crop: F.avg_pool2d(  # noqa: E731
            crop, k, s, 0, ceil_mode=False, count_include_pad=True,
            divisor_override=mod.divisor_override)
        pad_value = 0.0
    else:
        return None
    return ((_axis(k, 0), _axis(s, 0), _axis(p, 0), _axis(d, 0)),
            (_axis(k, 1), _axis(s, 1), _axis(p, 1), _axis(d, 1)), pad_value, fn)


def _macs_per_output(mod: nn.Module) -> float:
    if isinstance(mod, nn.Conv2d):
        kh, kw = mod.kernel_size
        return float(mod.out_channels * (mod.in_channels // mod.groups) * kh * kw)
    if isinstance(mod, nn.Linear):
        return float(mod.in_features * mod.out_features)
    return 0.0


def _spatial_numel(t) -> int:
    return int(t.shape[-1] * t.shape[-2]) if isinstance(t, torch.Tensor) and t.dim() == 4 else 1


def _floordiv(a: torch.Tensor, b: int) -> torch.Tensor:
    return torch.div(a, b, rounding_mode="floor")


def _out_range(a: torch.Tensor, h: int, k: int, s: int, p: int, d: int, n_out: int):
    """Outputs ``[lo, hi]`` (per sample) whose window meets input rows ``[a, a + h)``."""
    lo = -_floordiv(-(a + p - d * (k - 1)), s)
    hi = _floordiv(a + h - 1 + p, s)
    return lo.clamp(min=0), hi.clamp(max=n_out - 1)


def _cap(lo: torch.Tensor, hi: torch.Tensor, n: int,
         tau: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per copy, the changed rows ``[lo, hi]`` (at least one), with `tau` at most
    ``ceil(tau * n)`` of them centred on the changed ones: Krypton's projective-field
    threshold, which ignores the changes outside."""
    hi = torch.maximum(hi, lo)
    if tau is not None:
        cap = max(1, math.ceil(tau * n))
        over = hi - lo + 1 > cap
        start = torch.round((lo + hi).double() / 2 - (cap - 1) / 2).long().clamp(0, n - cap)
        lo = torch.where(over, start, lo)
        hi = torch.where(over, start + cap - 1, hi)
    return lo, hi


def _fit(lo: torch.Tensor, hi: torch.Tensor, n: int) -> tuple[torch.Tensor, int]:
    """One rectangle size for the whole batch: starts ``(B,)`` and a size such that
    ``[start, start + size)`` holds every copy's ``[lo, hi]`` inside ``[0, n)``."""
    size = min(max(int((hi - lo + 1).max()), 1), n)
    start = torch.minimum(lo, torch.full_like(lo, n - size)).clamp(min=0)
    return start, size


def channel_total(a: torch.Tensor, ch: int) -> torch.Tensor:
    """Total activation of channel `ch` per sample: ``(B, C, ...) -> (B,)``."""
    a = a[:, ch]
    return a.reshape(a.shape[0], -1).sum(1) if a.dim() > 1 else a
