"""The interpreter: a batch of changed copies of the clean image, node by node."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .graph import TracedGraph
from .ops import (
    _BINARY_FUNCTIONS,
    _BINARY_METHODS,
    _POINTWISE_FUNCTIONS,
    _POINTWISE_METHODS,
    _inplace,
    _macs_per_output,
    _pointwise_module,
    _spatial,
    _spatial_numel,
    _spatially_constant,
)
from .regions import CLEAN, _cap, _Clean, _Dirty, _fit, _fit_union, _Full, _out_range


class IncrementalEngine(TracedGraph):
    """Krypton-style incremental inference over a torch.fx trace of the model.

    ``build(model, x1, layer)`` traces and checks it (`TracedGraph`); ``prepare(x1)`` runs the
    clean image once and keeps every node's output; ``run(patch, y, x)`` evaluates a batch of
    copies of it whose input differs only in the rectangles ``patch[b]`` at ``(y[b], x[b])``,
    recomputing only what changed (see `convlens.incremental`); returns the logits ``(B, K)``
    and the watched layer's total activation.
    """

    def __init__(self, gm, nodes, layer_node):
        super().__init__(gm, nodes, layer_node)
        self.macs_done = 0.0
        self.macs_full = 0.0
        self.incremental_nodes = 0
        self.full_ops: set[str] = set()

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
        box = _fit_union(rects, shape4, tau)
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
        box = _fit_union(rects, shape4, tau)
        if box is None:
            return None
        (ys, hh), (xs, ww), bounds = box
        rows = ys[:, None] + torch.arange(hh, device=ys.device)
        cols = xs[:, None] + torch.arange(ww, device=xs.device)
        vals = [self._gather(t, _dirty_or_none(env, t), rows, cols, (0, 0), 0.0) for t in tensors]
        self.incremental_nodes += 1
        return _Dirty(torch.cat(vals, 1), ys, xs, *bounds)

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

def _dirty_or_none(env, nd) -> _Dirty | None:
    v = env.get(nd)
    return v if isinstance(v, _Dirty) else None

def channel_total(a: torch.Tensor, ch: int) -> torch.Tensor:
    """Total activation of channel `ch` per sample: ``(B, C, ...) -> (B,)``."""
    a = a[:, ch]
    return a.reshape(a.shape[0], -1).sum(1) if a.dim() > 1 else a
