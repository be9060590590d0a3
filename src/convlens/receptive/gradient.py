"""Receptive fields from the support of input gradients: exact on any graph.

For output cell ``(y, x)`` of a layer (on the image's grid, `convlens.grids.to_grid`: tokens
and channels-last maps included) the field is the set of input pixels where the gradient of
the sum over channels of the cell's absolute value is non-zero. It is taken on a surrogate of
the network (`surrogate`: a deep copy with positive weights, in float64, whose operations have
positive derivatives wherever the real ones can be non-zero) and a positive input, so

**why it is exact**: every partial derivative along every path from a pixel to the cell is
positive or the path does not exist (the weight is structurally absent: outside the kernel,
another group, a masked attention entry, a pixel the padding replaced), the gradient is a sum of
products of positive numbers over the existing paths, and such a sum is zero only where there
is no path. Nothing cancels and nothing saturates, so the support is the set of pixels the
cell can depend on for some weights and some input: the architecture's receptive field. In
float64 the smallest product along a path (``1/fan_in`` per layer for hundreds of layers) is
still far above the underflow.

Global reductions (pooling to 1x1, spatial means, normalisation statistics over the image,
attention over all the image's tokens) are detached in the surrogate: the support is then the
*local* field of the spatial path, and `Field.global_context` says the cell also depends on the
whole image. A cell with an empty local support (a pooled vector) has a global field.

**From supports to (size, stride, centre).** Per axis, the end cells and the middle three of
the grid are measured (cells on the diagonal: each tells both axes); a cell's support along y
is its rows' extent. The border is where the end cells' supports stop (the image's edge, or
short of it where valid convolutions never reach the last pixels); an edge that stops inside
it is not clipped. The stride is the shift between the unclipped edges of cells; when every
pair agrees, the cells see one window shifted by the stride and the field is the union of their
supports shifted back to cell 0 (``lo_i - i * stride`` .. ``hi_i - i * stride``): exact when
its low end comes from an unclipped low edge and its high end likewise. Where the middle cells
are clipped, the next-to-end cells are measured too: a cell near one end sees past the middle
toward the other, so fields up to about twice the input size are measured at the model's own
size. Where the pairs disagree (windowed attention, upsampling) a run of 9 cells around the
middle is measured and the field is their envelope (`Field.envelope`): stride the grid's
spacing, cells placed symmetrically on the image, size the smallest box centred on each cell
that holds what it sees. Where every cell is clipped, larger inputs are tried (`SCALES`, within
`WORK`) if the model takes them; otherwise the field is reported clipped (`Field.clipped`: the
size is a lower bound, and stride and centre are the grid's spacing and symmetric placement
when no unclipped edge tells them).

**Batched.** One forward and one backward pass answer many (layer, cell) questions: each
question is one copy of the input in the batch (eval-mode images are independent), the loss
sums each element's own cell, so each element's input gradient is that cell's alone. Questions
are sorted by depth and cut into chunks that bound the memory; the forward pass of a chunk
stops after its deepest layer. Layers that hold the same value (a Sequential and its last
child, a ReLU and what it was given, in the surrogate) are asked once.
"""
from __future__ import annotations

import contextlib
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import nn

from ..grids import grid_layout, to_grid
from ..hooks import forward_hooks
from .field import Field
from .marks import is_image, key_of
from .surrogate import DTYPE, SurrogateMode, surrogate_copy

SCALES = (1, 2, 4)        # input sizes tried, times the model's, while every cell is clipped
WORK = 128 * 224 * 224    # a larger input is tried while (cells measured x its pixels) stay under
MEMORY = 256 * 2 ** 20    # bytes one chunk of the batch may take (estimated from one image)
MAX_CHUNK = 64
BAR_DELAY = 3.0            # seconds before the measuring shows a progress bar


@dataclass
class _Layer:
    """What one surrogate pass at one input size tells about a named layer."""

    name: str
    layout: tuple
    hw: tuple[int, int]
    order: int
    calls: int
    key: tuple
    context: bool
    dead: bool      # reaches the input only through detached global reductions: no local field


class _Stop(Exception):
    """Raised by a hook once the deepest layer a chunk needs has returned."""


def gradient_fields(model: nn.Module, example: torch.Tensor, names: Sequence[str],
                    scales: Sequence[int] = SCALES, work: int = WORK,
                    memory: int = MEMORY) -> dict[str, Field]:
    """The receptive field of each named layer whose output is a map of the image, from the
    support of input gradients (see the module docstring); `example` gives the input's
    ``(C, H, W)`` and device. Layers that did not run, or whose output is no map of the image,
    are left out. `model` is not touched: the work runs on a surrogate copy.

    Where every cell is clipped at the model's size, the input sizes ``scales`` times larger
    are tried in turn while the model takes them and the work (cells measured times input
    pixels) stays under `work`; a larger input's answer is taken where it is a whole local
    field of the same kind (at another size a windowed model may attend globally, or a pooling
    become global). `memory`: bytes a chunk of the batch may take."""
    twin = surrogate_copy(model)
    c, h, w = example.shape[-3:]
    device = next((p.device for p in twin.parameters()), example.device)
    best: dict[str, Field] = {}
    pending = list(dict.fromkeys(names))
    with torch.inference_mode(False), torch.enable_grad(), _threads(device):
        for scale in scales:
            hw = (h * scale, w * scale)
            try:
                layers, nbytes = _plan(twin, pending, c, hw, device)
            except Exception:  # noqa: BLE001  the model does not take this size: stop growing
                if not best:
                    raise
                break
            if best and len({layer.key for layer in layers.values()}) * 7 * hw[0] * hw[1] > work:
                break
            chunk = max(1, min(MAX_CHUNK, memory // max(1, nbytes)))
            for name, f in _measure(twin, layers, c, hw, device, chunk).items():
                if name not in best:
                    best[name] = f
                elif not (f.clipped or f.is_global or best[name].is_global
                          or f.global_context != best[name].global_context):
                    best[name] = f
            pending = [n for n in pending if n in best and best[n].clipped]
            if not pending:
                break
    return best


@contextlib.contextmanager
def _threads(device: torch.device):
    """One CPU thread while the surrogate runs: its operations are many and small, and on a
    busy machine each parallel region waits for a descheduled thread (measured on 2 shared
    cores: 4 to 5 times slower with two threads than with one)."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _plan(twin: nn.Module, names: list[str], channels: int, hw: tuple[int, int],
          device) -> tuple[dict[str, _Layer], int]:
    """One surrogate pass of one positive image at size `hw`: each named layer's grid layout,
    call count, when its last call returned and which value it holds; and the bytes one image
    takes in a pass with gradients (what autograd saves, and a few of the largest tensors)."""
    seen: dict[str, tuple] = {}
    alive: list[torch.Tensor] = []  # ids stay unique while keys are compared
    tick = iter(range(10 ** 9))

    def record(name, module, t):
        alive.append(t)
        calls = seen[name][2] + 1 if name in seen else 1
        seen[name] = (t, next(tick), calls, key_of(t), getattr(t, "_cl_ctx", False),
                      getattr(t, "_cl_dead", False))

    saved: dict[int, int] = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.ones(1, channels, *hw, dtype=DTYPE, device=device, requires_grad=True)
    x._cl_img = True
    mode = SurrogateMode(1, hw, keep=alive)
    with forward_hooks(twin, names, record), mode, \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        twin(x)
    layers = {}
    for name, (t, order, calls, key, ctx, dead) in seen.items():
        if not is_image(t) or t.dim() < 3 or t.shape[0] != 1:
            continue
        lay = grid_layout(tuple(t.shape[1:]), hw)
        grid_hw = None if lay is None else tuple(t.shape[-2:]) if lay[0] == "map" else lay[2]
        if grid_hw is None or not _image_like(grid_hw, hw):
            continue  # no map of the image (a window partition read as (C, h, w), say)
        layers[name] = _Layer(name, lay, grid_hw, order, calls, key, bool(ctx), bool(dead))
    return layers, sum(saved.values()) + 4 * mode.largest


def _image_like(grid_hw: tuple[int, int], hw: tuple[int, int]) -> bool:
    """Whether an ``h x w`` grid can be a map of an image of `hw`: of its aspect within 15%
    (MaxViT's window partitions, 64 windows x 49 tokens x 64 channels, read as a (C, h, w) map
    of 49 x 64 cells by `grid_layout`, are not)."""
    (h, w), (H, W) = grid_hw, hw
    return h >= 1 and w >= 1 and abs(H / h - W / w) <= 0.15 * max(H / h, W / w)


def _axis_cells(n: int, level: int) -> list[int]:
    """Indices measured along an axis of `n` cells: at level 0 the middle three and the end
    ones (where the supports stop); at 1 also the next to the ends (fields wider than the
    image); at 2 also a run of 9 around the middle (fields that vary from cell to cell, with
    a period up to 9 cells: attention windows)."""
    m = (n - 1) // 2
    idx = {0, m - 1, m, m + 1, n - 1}
    if level >= 1:
        idx |= {1, n - 2}
    if level >= 2:
        idx |= set(range(m - 4, m + 5))
    return sorted(i for i in idx if 0 <= i < n)


def _cells(hw: tuple[int, int], level: int) -> list[tuple[int, int]]:
    """Cells measured: the axes' indices paired along the diagonal (one cell tells both)."""
    ys, xs = _axis_cells(hw[0], level), _axis_cells(hw[1], level)
    return [(ys[k % len(ys)], xs[k % len(xs)]) for k in range(max(len(ys), len(xs)))]


def _measure(twin, layers: dict[str, _Layer], channels, hw, device, chunk) -> dict[str, Field]:
    """Fields of `layers` at input size `hw`: each distinct value measured once, on the middle
    cells, then where those do not settle it on more (`_axis_cells`)."""
    reps: dict[tuple, str] = {}
    for name in sorted(layers, key=lambda n: layers[n].order):
        reps.setdefault(layers[name].key, name)
    fields = {rep: Field(hw, None, None, is_global=True, source="gradient")
              for rep in reps.values() if layers[rep].dead}
    level = {rep: 0 for rep in reps.values() if rep not in fields}
    boxes: dict[str, list] = defaultdict(list)
    done: dict[str, set] = defaultdict(set)
    while level:
        jobs = []
        for rep, lv in level.items():
            new = [c for c in _cells(layers[rep].hw, lv) if c not in done[rep]]
            done[rep].update(new)
            jobs += [(rep, y, x) for y, x in new]
        for rep, found in _supports(twin, layers, jobs, channels, hw, device, chunk).items():
            boxes[rep] += found
        again = {}
        for rep, lv in level.items():
            more = not set(_cells(layers[rep].hw, lv + 1)) <= done[rep]
            f = _fit(boxes[rep], layers[rep], hw, lv, more)
            if f is None:
                again[rep] = lv + 1
            else:
                fields[rep] = f
        level = again
    out = {}
    for name, layer in layers.items():
        f = fields.get(reps[layer.key])
        if f is not None:  # a value shared by several layers: each keeps its own context
            out[name] = f if f.is_global else replace(f, global_context=layer.context)
    return out


def _supports(twin, layers, jobs, channels, hw, device, chunk) -> dict[str, list]:
    """Per layer, ``(y, x, (lo_y, hi_y), (lo_x, hi_x))`` of the input-gradient support of each
    cell in `jobs` (``(layer, y, x)``); ``None`` extents for an empty support."""
    from tqdm.auto import tqdm

    jobs = sorted(jobs, key=lambda j: layers[j[0]].order)
    found: dict[str, list] = defaultdict(list)
    # on a large transformer this takes a minute: a bar, shown only after BAR_DELAY seconds
    with tqdm(total=len(jobs), desc=f"receptive fields from input gradients, {hw[0]}x{hw[1]}",
              unit="cell", delay=BAR_DELAY, leave=False, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for start in range(0, len(jobs), chunk):
            part = jobs[start:start + chunk]
            grad = _gradient(twin, layers, part, channels, hw, device)
            nz = grad.abs().sum(1) > 0
            for k, (name, y, x) in enumerate(part):
                found[name].append((y, x, _extent(nz[k].any(1)), _extent(nz[k].any(0))))
            bar.update(len(part))
    return found


def _extent(v: torch.Tensor) -> tuple[int, int] | None:
    idx = v.nonzero()
    return None if len(idx) == 0 else (int(idx[0]), int(idx[-1]))


def _gradient(twin, layers, part, channels, hw, device) -> torch.Tensor:
    """Input gradients ``(B, C, H, W)`` of one chunk: element ``k`` answers ``part[k]``."""
    wanted: dict[str, list] = defaultdict(list)
    for k, (name, y, x) in enumerate(part):
        wanted[name].append((k, y, x))
    stop = max(wanted, key=lambda n: layers[n].order)
    calls: Counter = Counter()
    terms: list[torch.Tensor] = []

    def record(name, module, t):
        calls[name] += 1
        if calls[name] != layers[name].calls:
            return  # a module called several times: its last call is the layer's value
        if t.requires_grad:
            ks, ys, xs = zip(*wanted[name])
            g = to_grid(t, layers[name].layout)
            terms.append(g[list(ks), :, list(ys), list(xs)].abs().sum())
        if name == stop:
            raise _Stop

    x = torch.ones(len(part), channels, *hw, dtype=DTYPE, device=device, requires_grad=True)
    x._cl_img = True
    with contextlib.suppress(_Stop), forward_hooks(twin, list(wanted), record), \
            SurrogateMode(len(part), hw):
        twin(x)
    if not terms:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(torch.stack(terms).sum(), x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def _fit(boxes: list, layer: _Layer, hw: tuple[int, int], level: int,
         more: bool) -> Field | None:
    """The field of a layer from its cells' supports at measuring `level`; None: `more` cells
    can be measured and should be (the middle cells are clipped, or the cells do not see one
    window shifted by the stride and the run of 9 is not measured yet)."""
    full = [b for b in boxes if b[2] is not None]
    if not full:
        return Field(hw, None, None, is_global=True, source="gradient")
    axes = [_fit_axis([(b[a], *b[2 + a]) for b in full], layer.hw[a], hw[a]) for a in range(2)]
    (sy, jy, cy, ky, ey), (sx, jx, cx, kx, ex) = axes
    alike = all(len({b[2 + a] for b in full}) == 1 for a in range(2))  # more cells: the same
    if more and not alike and ((ey or ex) or (level == 0 and (ky or kx))):
        return None
    return Field((sy, sx), (jy, jx), (cy, cx), global_context=layer.context,
                 clipped=ky or kx, envelope=ey or ex, source="gradient")


def _fit_axis(obs: list[tuple[int, int, int]], n: int, size: int):
    """``(size, stride, centre, clipped, envelope)`` along one axis from ``(index, lo, hi)`` of
    measured cells on an axis of `n` cells and `size` pixels (module docstring)."""
    obs = sorted(set(obs))
    # The border: where the supports of the end cells stop (the image's edge, or short of it
    # where valid convolutions never reach the last pixels); a support that stops inside it
    # is not clipped.
    first, last = obs[0], obs[-1]
    edge_lo = first[1] if first[0] == 0 and n > 1 else 0
    edge_hi = last[2] if last[0] == n - 1 and n > 1 else size - 1
    obs = [(i, lo, hi, lo > edge_lo, hi < edge_hi) for i, lo, hi in obs]
    steps = set()
    for k, (a, lo_a, hi_a, in_lo_a, in_hi_a) in enumerate(obs):
        for b, lo_b, hi_b, in_lo_b, in_hi_b in obs[k + 1:]:
            if in_lo_a and in_lo_b:
                steps.add((lo_b - lo_a) / (b - a))
            if in_hi_a and in_hi_b:
                steps.add((hi_b - hi_a) / (b - a))
    varies = len(steps) > 1 or any(s <= 0 or s != int(s) for s in steps)
    if (steps and not varies) or n == 1:  # one window shifted by the stride: align and unite
        stride = int(next(iter(steps))) if steps else size
        low = min(lo - i * stride for i, lo, *_ in obs)
        high = max(hi - i * stride for i, _, hi, *_ in obs)
        exact_low = any(ok and lo - i * stride == low for i, lo, _, ok, _ in obs)
        exact_high = any(ok and hi - i * stride == high for i, _, hi, _, ok in obs)
        return (int(high - low + 1), stride, (low + high) / 2,
                not (exact_low and exact_high), False)
    # No one window (windowed attention, upsampling), or nothing to compare (every cell
    # clipped on both sides): the grid's spacing, the cells placed symmetrically on the image,
    # and the smallest box centred on each cell that holds what it sees.
    stride = max(1, round(size / n))
    center = (size - 1) / 2 - (n - 1) / 2 * stride
    reach_in, reach_all = -1.0, -1.0
    for i, lo, hi, in_lo, in_hi in obs:
        c = center + i * stride
        reach_all = max(reach_all, c - lo, hi - c)
        reach_in = max(reach_in, c - lo if in_lo else -1.0, hi - c if in_hi else -1.0)
    if not steps:  # nothing compared, the stride not measured: the widest support seen
        return (max(hi - lo + 1 for _, lo, hi, *_ in obs), stride, center, True, False)
    clipped = reach_in < 0 or reach_all > reach_in  # a clipped edge reaches further
    return (int(round(2 * reach_all + 1)), stride, center, clipped, varies)
