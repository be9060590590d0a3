"""The traced graph of a model and its clean pass: every node's output for the clean image."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..hooks import capture


class TracedGraph:
    """A torch.fx trace of the model with every node's output for the clean image (`prepare`),
    checked against the model (`check`); `IncrementalEngine` runs changed copies over it."""

    def __init__(self, gm, nodes, layer_node):
        self.gm = gm
        self.nodes = nodes
        self.modules = dict(gm.named_modules())
        self.layer_node = layer_node
        self.clean: dict[Any, Any] = {}
        self.xdep: set = set()
        self.aliasing: set = set()
        self._padded: dict = {}  # clean values, padded for crops (see IncrementalEngine._gather)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def build(cls, model: nn.Module, x1: torch.Tensor, layer: str | None):
        """An engine (of this class) for `model`, or ``(None, reason)`` when it cannot be traced or
        checked."""
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
