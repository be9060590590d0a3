"""The part of a network after a layer, run on given activations of that layer (torch.fx).

Ablation-CAM scores hundreds of ablated copies of one layer's activations: only the network
after the layer depends on them. `Suffix.build` traces the model, cuts its graph at the one
call of the layer (its last call, where a module is called several times, as `capture`
takes it) and keeps the nodes that depend on it; whatever else those nodes read from
before the cut (a residual branch that joins later) is computed once per image by the prefix
graph and broadcast. Where the model cannot be traced, or the
cut graph does not give the model's own scores, `build` says why and the caller falls back to
substituting the layer's output with a hook (which still runs the prefix).
"""
from __future__ import annotations

import torch

from ...grids import grid_layout, to_grid
from ...lens import select_output


class Suffix:
    """``suffix(acts, extras)``: the model's class scores from activations ``acts`` of the cut
    layer, in its own layout (``(B, C, h, w)``, a Swin block's ``(B, h, w, C)``, tokens);
    ``extras`` are the prefix values the suffix reads besides them (`prefix`, for one image),
    broadcast over ``B``."""

    def __init__(self, prefix_gm, suffix_gm, output):
        self.prefix_gm = prefix_gm
        self.suffix_gm = suffix_gm
        self.output = output

    @classmethod
    def build(cls, lens, layer: str) -> tuple["Suffix | None", str]:
        """The suffix of `lens`'s model after module `layer`, or ``(None, why not)``."""
        import torch.fx as fx

        model = lens.model if hasattr(lens, "model") else lens
        try:
            gm = fx.symbolic_trace(model)
        except Exception as e:  # data-dependent control flow, unsupported ops, ...
            return None, f"torch.fx cannot trace {type(model).__name__} ({type(e).__name__})"
        nodes = list(gm.graph.nodes)
        # the nodes computed inside module `layer` (a leaf's call, or a block's or a
        # Sequential's inlined nodes, as fx records them); the last one is its output, of
        # its last call where it is called several times (as `capture` takes it)
        cuts = [n for n in nodes if (n.op == "call_module" and n.target == layer) or any(
            v[0] == layer for v in (n.meta.get("nn_module_stack") or {}).values())]
        if not cuts:
            return None, f"layer {layer!r} is not found in the traced graph"
        cut = cuts[-1]
        after: set = set()
        for n in nodes[nodes.index(cut) + 1:]:
            if any(a is cut or a in after for a in n.all_input_nodes):
                after.add(n)
        out = next(n for n in nodes if n.op == "output")
        if out not in after:
            return None, f"the scores do not depend on layer {layer!r}"
        extras = []
        for n in nodes:
            if n in after:
                for a in n.all_input_nodes:
                    if a is not cut and a not in after and a.op != "get_attr" and a not in extras:
                        extras.append(a)
        # the prefix: everything up to the cut and the extras, returned as one tuple
        pre = fx.Graph()
        env: dict = {}
        for n in nodes:
            if n in after or n is out:
                continue
            env[n] = pre.node_copy(n, lambda a: env[a])
        pre.output((env[cut], *(env[e] for e in extras)))
        # the suffix: the cut and the extras as inputs, then the nodes after the cut
        suf = fx.Graph()
        senv: dict = {cut: suf.placeholder("acts")}
        for i, e in enumerate(extras):
            senv[e] = suf.placeholder(f"extra_{i}")

        def arg(a):
            if a not in senv:  # a parameter or buffer read by the suffix
                senv[a] = suf.node_copy(a, lambda b: senv[b])
            return senv[a]
        for n in nodes:
            if n in after:
                senv[n] = suf.node_copy(n, arg)
        return cls(fx.GraphModule(gm, pre), fx.GraphModule(gm, suf),
                   getattr(lens, "output", None)), ""

    def prefix(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        """The cut layer's activations and the extras for images `x`."""
        got = self.prefix_gm(x)
        return got[0], list(got[1:])

    def __call__(self, acts: torch.Tensor, extras: list) -> torch.Tensor:
        b = len(acts)
        wide = [e.expand(b, *e.shape[1:]) if isinstance(e, torch.Tensor) and e.dim() > 0
                and e.shape[0] == 1 else e for e in extras]
        return select_output(self.suffix_gm(acts, *wide), self.output)


def check(suffix: Suffix, lens, x1: torch.Tensor, act1: torch.Tensor) -> str:
    """'' when the prefix gives the layer's activations `act1` (as captured, on the image's
    grid: `convlens.grids`) on the one image `x1` and the cut graph gives the model's scores
    from them, else why not."""
    try:
        acts, extras = suffix.prefix(x1)
        acts = to_grid(acts, grid_layout(acts.shape[1:], tuple(x1.shape[-2:])))
        # one image against the batch it was captured in: the kernels round differently
        # (efficientnet_v2_l's last layer: 2.5e-6 of its range), so the tolerance is relative
        # to the range, not to each value
        if acts.shape != act1.shape or not torch.allclose(
                acts, act1, rtol=1e-5, atol=1e-5 * float(act1.abs().max()) + 1e-12):
            return "the traced graph's value at the layer is not the layer's output"
        native, _ = suffix.prefix(x1)
        got = suffix(native.repeat(2, *[1] * (native.dim() - 1)), extras)  # broadcast, as used
        want = lens(x1).expand(2, -1)
    except Exception as e:  # a graph that runs differently once cut
        return f"the cut graph does not run ({type(e).__name__})"
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or not torch.allclose(
            got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()) + 1e-12):
        return "the cut graph does not give the model's scores"
    return ""
