"""Which pixels of a bilinearly upsampled map reach a threshold, counted without upsampling
the map (network dissection's pass 2, `dissection.IoUCounts`).

``F.interpolate(a, (H, W), mode="bilinear", align_corners=False)`` makes each output pixel a
weighted sum, with non-negative weights that sum to 1, of the four input values of its *cell*
(input rows ``i, i+1`` and columns ``j, j+1``, clamped at the last row and column). So a pixel
can reach a threshold ``T`` only if a corner of its cell is near ``T`` or above, and with
``T`` a unit's top-0.5 % level about 1 % of the cells have one. `count_above` finds those
cells from the input values (``a >= T - m``; rows, or whole maps, whose maximum is below are
skipped), evaluates only their pixels, and counts each pixel that reaches ``T`` under the code
of its concepts (`Codes`: one integer per pixel), per unit: ``(U, K)`` integer counts.

It gives the counts of thresholding ``F.interpolate``'s output, bit for bit, not an
approximation:

* a cell whose four corners all lie below ``T - m`` has every pixel below ``T``, and one whose
  corners all lie at ``T + m`` or above has every pixel at or above it (``m = 1e-5 |T|``: the
  rounding of a convex combination in float32 moves it by a few ulps of its largest term, and
  the weights of a pixel never sum to more than 1 plus an ulp); with ``T <= 0`` a cell of
  corners ``>= 0`` is all on (products and sums of non-negative floats stay non-negative);
* a candidate cell's pixels are taken in tiles (at most 8 x 8; a cell of 8 or more outputs a
  side is cut in at least 2 x 2). Within a cell the value is bilinear in the two weights, so
  over a tile it lies between its values at the tile's four corners: a tile whose corners
  are all clearly below (above) ``T`` is off (on) as a whole, and only the tiles ``T``
  crosses are evaluated pixel by pixel;
* a pixel is evaluated with torch's weights (`source_index`: the source index
  ``scale * (y + 0.5) - 0.5``, rounded as ATen's compiled kernels round it); where its value
  lies within a margin of ``T`` that covers both roundings (`PIX`, and `PER_ROW` where
  `exact_weights` cannot confirm the weights), it takes the value of ``F.interpolate``
  itself. Torch's last bit depends on the call (its vectorised kernel, used for outputs of
  ``H + W <= 128``, rounds a channel by its place in the vector), so that call is the one
  thresholding the whole layer makes: the image's maps of the unit's `unit_chunk` (units
  ``64 k ... 64 k + 63`` by default), or the maps alone where `planewise` finds that the
  same;
* maps holding NaN or infinity are counted the literal way (`literal_above`).

Memory stays bounded: the input values are scanned `STEP` at a time and the candidate pixels
`PIXELS` at a time. The dataset pass runs it in the forward hook (`dissect.Overlaps`), while
the maps are in the cache.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: corners below ``T - m`` (above ``T + m``) leave every pixel of the cell below (at or above)
#: the threshold; ``m = REL * |T| + TINY``
REL = 1e-5
TINY = 1e-37
#: a pixel evaluated here is decided by `F.interpolate` where its value lies within
#: ``PIX * (|corners| + |T|) + PER_ROW * max(h, w) * (max - min of the corners)`` of T: about
#: 70 float32 ulps for both roundings, and (unless `exact_weights` finds torch's weights equal
#: to `source_index`'s) two ulps of the source index per input row, which a kernel that
#: rounds the index otherwise moves a weight by
PIX = 4e-6
PER_ROW = 2.4e-7
#: input values scanned at once, candidate pixels evaluated at once
STEP = 1 << 22
PIXELS = 1 << 22
#: the most rows (columns) of a tile (a cell of 8 or more: half of it): a tile of 16 pixels
#: or more is first judged by its corners (the value is bilinear in the weights within a
#: cell, so it lies between its values at the tile's corners), and only a tile that the
#: threshold crosses is evaluated
TILE = 8


def source_index(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each output index's input index ``i0`` and the weight ``w1`` of input ``i0 + 1`` (of
    ``i0`` at the last input), as ATen computes them for ``align_corners=False`` in float32:
    ``real = max(0, (n_in / n_out) * (y + 0.5) - 0.5)``, ``i0 = min(floor(real), n_in - 1)``,
    ``w1 = clamp(real - i0, 0, 1)``; ``w0 = 1 - w1``. The same size copies (``w1 = 0``).
    ``real`` is rounded once, as the fused multiply-add of torch's compiled CPU kernels
    (``tests/test_dissection_core.py`` checks the weights against ``F.interpolate``'s)."""
    if n_in == n_out:
        return torch.arange(n_out), torch.zeros(n_out)
    scale = (torch.tensor(n_in, dtype=torch.float32) / n_out).double()
    y = torch.arange(n_out, dtype=torch.float32) + 0.5  # exact; the product is exact in float64
    real = (scale * y.double() - 0.5).float().clamp_min(0)
    i0 = real.floor().long().clamp_max(n_in - 1)
    return i0, (real - i0.float()).clamp(0, 1)


@dataclass(frozen=True)
class Axis:
    """One axis of the upsampling, cut in tiles: the outputs of each cell (input index) in
    runs of at most `size`. Cell ``i`` owns tiles ``first[i]:first[i + 1]``. `weights` holds
    per tile, in columns, w0 and w1 of its outputs (padded to `size` with NaN); `ends` w0 and
    w1 at its first and last output (a tile is judged by its corners before its outputs are
    taken); `index` its outputs (padding: its first output)."""

    size: int
    first: torch.Tensor    # (n_in + 1,)
    index: torch.Tensor    # (tiles, size) output index
    weights: torch.Tensor  # (tiles, 2 * size) float32
    ends: torch.Tensor     # (tiles, 4) float32
    full: bool             # no tile is padded
    exact: bool            # torch's kernels weigh as `source_index` (`exact_weights`)

    @property
    def tiles(self) -> int:
        return len(self.index)

    def parts(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of `weights` (or of `ends`) -> their w0 and w1."""
        b = w.shape[1] // 2
        return w[:, :b], w[:, b:]


@functools.lru_cache(maxsize=64)
def axis(n_in: int, n_out: int, device: str = "cpu") -> Axis:
    i0, w1 = source_index(n_in, n_out)
    span = -(-n_out // n_in)  # outputs per cell, at most
    size = max(1, min(TILE, span if span < 8 else span // 2))  # 4 tiles or more per big cell
    per_cell = torch.bincount(i0, minlength=n_in)
    start = torch.cumsum(per_cell, 0) - per_cell
    tiles = (per_cell + size - 1) // size
    first = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(tiles, 0)])
    cell = torch.repeat_interleave(torch.arange(n_in), tiles)
    t0 = start[cell] + (torch.arange(len(cell)) - first[cell]) * size
    end = start[cell] + per_cell[cell]
    pos = t0[:, None] + torch.arange(size)
    valid = pos < end[:, None]
    pos = torch.where(valid, pos, t0[:, None])
    nan = torch.tensor(float("nan"))
    w1t = torch.where(valid, w1[pos], nan)
    w0t = torch.where(valid, 1 - w1[pos], nan)
    ends = torch.stack([t0, torch.minimum(t0 + size, end) - 1], 1)
    weights = torch.cat([w0t, w1t], 1)
    ends = torch.cat([1 - w1[ends], w1[ends]], 1)
    return Axis(size, first.to(device), pos.to(device), weights.to(device), ends.to(device),
                bool(valid.all()), exact_weights(n_in, n_out, device))


def exact_weights(n_in: int, n_out: int, device: str = "cpu") -> bool:
    """Whether ``F.interpolate`` on `device` weighs the inputs of each output as
    `source_index` says, in its kernel for maps alone and in its kernel for many channels:
    each input's weight is the output of an impulse there (the other axis copied: weight 1)."""
    i0, w1 = source_index(n_in, n_out)
    mine = torch.zeros(n_in, n_out)
    y = torch.arange(n_out)
    mine.index_put_((i0, y), 1 - w1, accumulate=True)
    mine.index_put_(((i0 + 1).clamp_max(n_in - 1), y), w1, accumulate=True)
    eye = torch.eye(n_in, device=device)
    for x in (eye.view(n_in, 1, n_in, 1), eye.view(1, n_in, n_in, 1)):
        for width in (1, 200):  # below and above the output size of torch's vectorised kernel
            got = F.interpolate(x, size=(n_out, width), mode="bilinear", align_corners=False)
            if not torch.equal(got[..., 0].reshape(n_in, n_out).cpu(), mine):
                return False
    return True


class Codes:
    """One batch's concept codes ``(N, H, W)``, integers in ``[0, k)``, with their layout in
    the tiles of the last upsampling geometry asked (the layers of one size share it) and
    their counts."""

    def __init__(self, codes: torch.Tensor, k: int):
        self.n, self.size, self.k = codes.shape[0], tuple(codes.shape[1:]), int(k)
        self.flat = codes.reshape(self.n, -1).to(torch.int32 if k < 2 ** 31 else torch.int64)
        self._layout: tuple | None = None
        self._counts: torch.Tensor | None = None

    def to(self, device) -> "Codes":
        if self.flat.device == torch.device(device):
            return self
        return Codes(self.flat.to(device).view(self.n, *self.size), self.k)

    def counts(self) -> torch.Tensor:
        """``(k,)`` int64: the pixels of each code."""
        if self._counts is None:
            self._counts = torch.bincount(self.flat.view(-1), minlength=self.k)
        return self._counts

    def layout(self, rows: "Axis", cols: "Axis") -> torch.Tensor:
        """``(N * tiles_y * tiles_x, rows.size * cols.size)``: the codes of each image's tiles
        (row ``(n * tiles_y + r) * tiles_x + c``; padding repeats a pixel of the tile)."""
        if self._layout is None or self._layout[0] is not rows or self._layout[1] is not cols:
            off = (rows.index[:, None, :, None] * self.size[1]
                   + cols.index[None, :, None, :]).reshape(-1)
            lay = torch.gather(self.flat, 1, off.expand(self.n, -1))
            lay = lay.view(-1, rows.size * cols.size)
            self._layout = (rows, cols, lay)
        return self._layout[2]


def count_above(a: torch.Tensor, t: torch.Tensor, codes: torch.Tensor | Codes,
                n_codes: int | None = None, unit_chunk: int = 64,
                peak: torch.Tensor | None = None) -> torch.Tensor:
    """``(U, n_codes)`` int64: for each unit ``u`` and code ``k``, the pixels ``(n, y, x)``
    with ``codes[n, y, x] == k`` where the map upsampled as
    ``F.interpolate(a[:, c:c + unit_chunk], codes.shape[1:], mode="bilinear",
    align_corners=False)`` (``c`` the multiple of `unit_chunk` below ``u``) is at least ``t[u]``.

    a ``(N, U, h, w)``; t ``(U,)``; codes ``(N, H, W)`` integers in ``[0, n_codes)``, or a
    `Codes`. `peak`: ``a.amax((2, 3))`` or ``a.amax(3)`` if the caller has it (the maps and
    rows without a value near ``t`` are skipped). Runs on `a`'s device, `STEP` input values
    at a time."""
    n, units, h, w = a.shape
    dev = a.device
    if not isinstance(codes, Codes):
        codes = Codes(codes, n_codes)
    codes = codes.to(dev)
    a = a.detach().float()
    t = t.detach().to(dev, torch.float32)
    if units * codes.k >= 2 ** 31 - 1 and codes.flat.dtype == torch.int32:
        codes = Codes(codes.flat.long().view(codes.n, *codes.size), codes.k)
    dump = units * codes.k  # the bin of the pixels that are off
    hist = torch.zeros(dump + 1, dtype=torch.int64, device=dev)
    rows, cols = axis(h, codes.size[0], str(dev)), axis(w, codes.size[1], str(dev))
    step = max(1, STEP // max(1, n * h * w))
    peak = None if peak is None else peak.to(dev, torch.float32)
    for u0 in range(0, units, step):
        u1 = min(units, u0 + step)
        if not _count(a[:, u0:u1].contiguous(), t[u0:u1], u0, codes, rows, cols, hist, a, t,
                      int(unit_chunk), None if peak is None else peak[:, u0:u1]):
            return literal_above(a, t, codes, unit_chunk)
    return hist[:dump].view(units, codes.k)


def literal_above(a: torch.Tensor, t: torch.Tensor, codes: Codes,
                  unit_chunk: int = 64) -> torch.Tensor:
    """`count_above` the literal way: each chunk of maps upsampled, cut at `t` and counted
    (where maps hold NaN or infinity, whose cells the bounds of `count_above` do not hold
    for)."""
    units = a.shape[1]
    hist = torch.zeros(units * codes.k, dtype=torch.int64, device=a.device)
    flat = codes.flat.long().view(codes.n, 1, *codes.size)
    for c0 in range(0, units, unit_chunk):
        c1 = min(units, c0 + unit_chunk)
        up = F.interpolate(a[:, c0:c1].float(), size=codes.size, mode="bilinear",
                           align_corners=False)
        key = flat + torch.arange(c0, c1, device=a.device)[None, :, None, None] * codes.k
        hist += torch.bincount(key[up >= t[c0:c1, None, None]], minlength=len(hist))
    return hist.view(units, codes.k)


def _pick(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    return x.index_select(0, i)


def _value(f: torch.Tensor, wx0: torch.Tensor, wx1: torch.Tensor,
           wy1: torch.Tensor) -> torch.Tensor:
    """``(Q, rows, columns)``: value - T of cells ``f (Q, >= 5)`` (corners a00, a01, a10,
    a11, T) at weights ``wx (Q, columns)``, ``wy1 (Q, rows)``, as torch weighs them (columns
    first; the rows as ``r0 + wy1 (r1 - r0)``, within a few ulps of torch's
    ``r0 wy0 + r1 wy1``)."""
    r0 = f[:, 0:1] * wx0 + f[:, 1:2] * wx1
    r1 = f[:, 2:3] * wx0 + f[:, 3:4] * wx1
    return torch.addcmul((r0 - f[:, 4:5])[:, None, :], wy1[:, :, None], (r1 - r0)[:, None, :])


def _count(a: torch.Tensor, t: torch.Tensor, u0: int, codes: Codes, rows: Axis, cols: Axis,
           hist: torch.Tensor, whole: torch.Tensor, t_all: torch.Tensor,
           unit_chunk: int, peak: torch.Tensor | None) -> bool:
    """`count_above` for units ``u0 ...`` of `whole` (`a`: those units, contiguous), into
    `hist` (its last bin: the pixels that are off); False (nothing counted) where the maps
    hold NaN or infinity."""
    n, units, h, w = a.shape
    dev = a.device
    dump = len(hist) - 1
    m = REL * t.abs() + TINY
    lo = t - m
    # the values >= T - m: found in the rows (maps, if narrow) whose maximum is
    seg = w if w >= 16 else h * w
    if peak is None:
        top = a.view(-1, seg).amax(1)
    elif peak.dim() == 3:  # row maxima
        top = peak.reshape(-1) if seg == w else peak.amax(2).reshape(-1)
    else:
        top = peak.reshape(-1) if seg == h * w else a.view(-1, seg).amax(1)
    per = h * w // seg
    lo_seg = lo.repeat_interleave(per)
    if not bool(torch.isfinite(top).all()):
        return False
    live = (top.view(n, -1) >= lo_seg).view(-1).nonzero().squeeze(1)
    if not len(live):
        return True
    k = _pick(a.view(-1, seg), live) >= _pick(lo_seg, live % (units * per))[:, None]
    k = k.view(-1).nonzero().squeeze(1)
    row, col = _pick(live, k // seg), k % seg
    hot = row * seg + col
    # the cells with a corner at or above T - m: each such value is a corner of <= 4 cells
    if seg == w:
        up, left = (row % h > 0).long() * w, (col > 0).long()
    else:
        up, left = (col >= w).long() * w, (col % w > 0).long()
    cells = torch.cat([hot, hot - up, hot - left, hot - up - left]).unique()
    ci, cj = cells // w % h, cells % w
    down, right = (ci < h - 1).long() * w, (cj < w - 1).long()
    corner = _pick(a.view(-1), torch.stack([cells, cells + right, cells + down,
                                            cells + down + right], 1).view(-1)).view(-1, 4)
    plane = cells // (h * w)
    unit, item = plane % units, plane // units
    tq = _pick(t, unit)
    low, top = corner.amin(1), corner.amax(1)
    sure = (low >= tq + _pick(m, unit)) | ((tq <= 0) & (low >= 0))  # the cell is all on
    per_row = 0.0 if rows.exact and cols.exact else PER_ROW * max(h, w)
    margin = (PIX * (corner.abs().amax(1) + tq.abs()) + per_row * (top - low)
              + TINY)
    f = torch.cat([corner, tq[:, None], margin[:, None]], 1)  # (cells, 6)
    base = torch.stack([item * rows.tiles, (unit + u0) * codes.k], 1)  # (cells, 2)
    # the tiles of each cell
    rt, ct = _pick(rows.first, ci), _pick(cols.first, cj)
    nr, nc = _pick(rows.first, ci + 1) - rt, _pick(cols.first, cj + 1) - ct
    nt = nr * nc
    if bool((nt == 1).all()):
        q, tr, tc = torch.arange(len(cells), device=dev), rt, ct
    else:
        q = torch.repeat_interleave(torch.arange(len(cells), device=dev), nt)
        k = torch.arange(len(q), device=dev) - _pick(torch.cumsum(nt, 0) - nt, q)
        nc = _pick(nc, q)
        tr, tc = _pick(rt, q) + k // nc, _pick(ct, q) + k % nc
    layout = codes.layout(rows, cols)
    judge = rows.size * cols.size >= 16
    padded = not (rows.full and cols.full)
    step = max(1, PIXELS // (rows.size * cols.size))
    for s in range(0, len(q), step):
        qq, r, c = q[s:s + step], tr[s:s + step], tc[s:s + step]
        full = _pick(sure, qq)
        fq = _pick(f, qq)
        if judge:  # the value - T at the tile's corners
            ex0, ex1 = cols.parts(_pick(cols.ends, c))
            d = _value(fq, ex0, ex1, rows.parts(_pick(rows.ends, r))[1]).view(-1, 4)
            full |= d.amin(1) > fq[:, 5]
            keep = (full | (d.amax(1) >= -fq[:, 5])).nonzero().squeeze(1)
            if len(keep) < len(qq):
                qq, r, c, full, fq = (_pick(x, keep) for x in (qq, r, c, full, fq))
        if not len(qq):
            continue
        wy1 = rows.parts(_pick(rows.weights, r))[1]
        wx0, wx1 = cols.parts(_pick(cols.weights, c))
        bq = _pick(base, qq)
        key = _pick(layout, (bq[:, 0] + r) * cols.tiles + c).view(-1, rows.size, cols.size)
        key += bq[:, 1:2, None].to(key.dtype)
        some = bool(full.any())
        if some and bool(full.all()):
            on = None
        else:  # evaluate the tiles the threshold crosses
            d = _value(fq, wx0, wx1, wy1)
            on = d >= 0  # NaN on padding: off
            dist = d.abs_()
            if padded:
                dist.nan_to_num_(nan=float("inf"))
            close = dist.view(len(qq), -1).amin(1) <= fq[:, 5]  # tiles with a pixel near T
            if some:
                close &= ~full
            if bool(close.any()):
                k = close.nonzero().squeeze(1)
                part = _pick(on, k)
                _exact(whole, t_all, _pick(item, _pick(qq, k)), _pick(unit, _pick(qq, k)) + u0,
                       _pick(rows.index, _pick(r, k)), _pick(cols.index, _pick(c, k)),
                       codes.size, _pick(dist, k) <= _pick(fq, k)[:, 5, None, None], part,
                       unit_chunk)
                on.index_copy_(0, k, part)
            if some:  # the tiles all on: their outputs (not their padding)
                k = full.nonzero().squeeze(1)
                if padded:
                    wk, vk = _pick(wy1, k), _pick(wx1, k)
                    on.index_copy_(0, k, (wk == wk)[:, :, None] & (vk == vk)[:, None, :])
                else:
                    on.index_fill_(0, k, True)
        if on is None and padded:
            on = (wy1 == wy1)[:, :, None] & (wx1 == wx1)[:, None, :]  # not NaN
        if on is not None:
            key = torch.where(on, key, dump)
        hist += torch.bincount(key.view(-1), minlength=len(hist))
    return True


@functools.lru_cache(maxsize=256)
def planewise(units: int, c0: int, c1: int, h: int, w: int, big_h: int, big_w: int,
              device: str, threads: int) -> bool:
    """Whether ``F.interpolate`` of a contiguous layer's units ``c0:c1`` rounds each map as
    it rounds the map alone (``(P, 1, h, w)``). Torch's generic kernel does; its vectorised
    channels-last kernel (outputs of ``H + W <= 128``, and other cases) rounds a channel by
    its place in the vector. Probed once per shape on random maps: kernels that round
    otherwise differ in the last bit of a good share of random values."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, units, h, w, generator=g).to(device)[:, c0:c1]
    whole = F.interpolate(x, size=(big_h, big_w), mode="bilinear", align_corners=False)
    alone = F.interpolate(x.reshape(-1, 1, h, w), size=(big_h, big_w), mode="bilinear",
                          align_corners=False)
    return torch.equal(whole.reshape(-1, big_h, big_w), alone[:, 0])


def _exact(a: torch.Tensor, t: torch.Tensor, item: torch.Tensor, unit: torch.Tensor,
           ys: torch.Tensor, xs: torch.Tensor, size: tuple[int, int], amb: torch.Tensor,
           on: torch.Tensor, unit_chunk: int) -> None:
    """Decide the pixels `amb` (tile, row, column) near the threshold by thresholding
    ``F.interpolate`` as the whole layer's thresholding does (`count_above`): of the
    `unit_chunk` units around theirs, or of their maps alone where that rounds the same
    (`planewise`)."""
    n, units, h, w = a.shape
    at = amb.view(-1).nonzero().squeeze(1)
    rb, cb = amb.shape[1:]
    q, y, x = at // (rb * cb), at // cb % rb, at % cb
    u, i = _pick(unit, q), _pick(item, q)
    y, x = ys[q, y], xs[q, x]
    got = torch.empty(len(q), dtype=torch.bool, device=a.device)
    first = u // unit_chunk * unit_chunk
    threads = torch.get_num_threads()
    one = units <= unit_chunk
    for c0 in [0] if one else first.unique().tolist():
        c1 = min(units, c0 + unit_chunk)
        part = torch.arange(len(q), device=a.device) if one else (first == c0).nonzero().squeeze(1)
        if a.is_contiguous() and h * w > 1 and planewise(units, c0, c1, h, w, *size,
                                                         str(a.device), threads):
            maps, which = (i[part] * units + u[part]).unique(return_inverse=True)
            per = max(1, STEP // (size[0] * size[1]))
            for s in range(0, len(maps), per):
                sel = ((which >= s) & (which < s + per)).nonzero().squeeze(1)
                up = F.interpolate(a.view(n * units, 1, h, w)[maps[s:s + per]], size=size,
                                   mode="bilinear", align_corners=False)[:, 0]
                k = part[sel]
                got[k] = up[which[sel] - s, y[k], x[k]] >= t[u[k]]
            continue
        # the layer's own call: its images (all of them where the batch's size could change
        # torch's choice of kernel, a map of one value)
        images = i[part].unique() if h * w > 1 else torch.arange(n, device=a.device)
        per = len(images) if h * w == 1 else max(1, STEP // ((c1 - c0) * size[0] * size[1]))
        for s in range(0, len(images), per):
            these = images[s:s + per]
            where = torch.full((n,), -1, dtype=torch.long, device=a.device)
            where[these] = torch.arange(len(these), device=a.device)
            sel = part[where[i[part]] >= 0]
            up = F.interpolate(a[these][:, c0:c1] if h * w > 1 else a[:, c0:c1], size=size,
                               mode="bilinear", align_corners=False)
            got[sel] = up[where[i[sel]], u[sel] - c0, y[sel], x[sel]] >= t[u[sel]]
    on.view(-1)[at] = got
