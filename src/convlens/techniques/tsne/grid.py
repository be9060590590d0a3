"""The t-SNE image grid: snap N embedded points to a rows x cols grid of cells.

A linear assignment (Jonker-Volgenant, scipy's `linear_sum_assignment`) of points to cells that
minimises the total squared move (METHODS.md §3, Karpathy's CNN-code grids). Above
`EXACT_MAX_CELLS` cells the assignment is hierarchical: points are split into blocks of about
`BLOCK_SIDE` x `BLOCK_SIDE` cells by their position, and each block is solved exactly.
"""
from __future__ import annotations

import numpy as np

from ...errors import ConvlensError

#: the grid's default side (cells per row and column)
GRID_SIDE = 50
#: a grid with more cells than this is assigned hierarchically, block by block
EXACT_MAX_CELLS = 2500
#: block side of the hierarchical assignment (32 x 32 = 1024 cells per exact problem)
BLOCK_SIDE = 32
#: with more than this many candidates per cell, "nearest" selection samples candidates first
CANDIDATES_PER_CELL = 2

def sample_indices(n: int, m: int | None, seed: int) -> np.ndarray:
    """All of ``range(n)``, or a sorted seeded sample of `m` of them."""
    if m is None or n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def grid_positions(emb: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The embedding scaled so that it spans the grid: ``(N, 2)`` as (row, col), in cell units."""
    e = np.asarray(emb, dtype=np.float64)
    lo, hi = e.min(0), e.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    u = (e - lo) / span
    return np.stack([u[:, 1] * rows, u[:, 0] * cols], 1)  # y -> row, x -> column


def _cells(rows: int, cols: int) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:cols]
    return np.stack([r.ravel() + 0.5, c.ravel() + 0.5], 1)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _exact(pos: np.ndarray, points: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal pairs (point, cell) between `points` and `cells` (indices into pos / the cells
    array); the smaller side is fully matched."""
    from scipy.optimize import linear_sum_assignment

    cost = _sqdist(pos[points], cells)
    if len(points) <= len(cells):
        r, c = linear_sum_assignment(cost)
        return points[r], c
    c, r = linear_sum_assignment(cost.T)  # more points than cells: each cell takes one
    return points[r], c


def _split(counts_of: np.ndarray, n: int) -> np.ndarray:
    """Split `n` items over parts with capacities `counts_of`, proportionally (largest
    remainder), never above a capacity."""
    total = counts_of.sum()
    if n >= total:
        return counts_of.copy()
    share = counts_of * (n / total)
    out = np.floor(share).astype(int)
    rest = n - out.sum()
    out[np.argsort(-(share - out), kind="stable")[:rest]] += 1
    return out


def _hierarchical(pos: np.ndarray, points: np.ndarray, rows: int, cols: int,
                  block: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced split into blocks of about block x block cells, then an exact assignment in
    each: points sorted by row are cut into bands of block rows, each band's points sorted by
    column are cut into blocks, as many points per block as it has cells (proportionally
    fewer when there are fewer points than cells)."""
    pts_out, cell_out = [], []
    band_edges = list(range(0, rows, block)) + [rows]
    col_edges = list(range(0, cols, block)) + [cols]
    band_cap = np.array([(b1 - b0) * cols for b0, b1 in zip(band_edges, band_edges[1:])])
    band_n = _split(band_cap, len(points))
    order = points[np.argsort(pos[points, 0], kind="stable")]
    start = 0
    for (r0, r1), nb in zip(zip(band_edges, band_edges[1:]), band_n):
        band = order[start:start + nb]
        start += nb
        cap = np.array([(r1 - r0) * (c1 - c0) for c0, c1 in zip(col_edges, col_edges[1:])])
        blk_n = _split(cap, len(band))
        band = band[np.argsort(pos[band, 1], kind="stable")]
        s = 0
        for (c0, c1), nk in zip(zip(col_edges, col_edges[1:]), blk_n):
            pts = band[s:s + nk]
            s += nk
            if not len(pts):
                continue
            rr, cc = np.mgrid[r0:r1, c0:c1]
            cells = np.stack([rr.ravel() + 0.5, cc.ravel() + 0.5], 1)
            p, c = _exact(pos, pts, cells)
            pts_out.append(p)
            cell_out.append(rr.ravel()[c] * cols + cc.ravel()[c])
    return np.concatenate(pts_out), np.concatenate(cell_out)


def grid_assign(emb: np.ndarray, rows: int, cols: int, select: str = "nearest", seed: int = 0,
                exact_max: int = EXACT_MAX_CELLS,
                block: int = BLOCK_SIDE) -> tuple[np.ndarray, str]:
    """Snap points to a rows x cols grid by the assignment that minimises the total squared
    move ``sum ||p_i - cell(i)||^2`` (the embedding scaled to span the grid, cells 1 apart).

    Args:
        emb: ``(N, 2)`` positions.
        select: with more points than cells, which images the grid shows:
            ``"nearest"``: the assignment also chooses them, each cell taking a distinct image
            near it (Karpathy's grid; the regions of the map get cells by area, so dense
            clusters show a smaller share of their images). Beyond 2 candidates per cell a
            seeded random sample of 2 per cell is the candidate set (the assignment's time
            grows fast with it: 2500 cells x 10000 images took 3x longer than x 5000).
            ``"sample"``: a seeded uniform sample of rows x cols images (classes get cells by
            their share of the images), then assigned.
        exact_max: grids with more cells are solved hierarchically: a balanced split of the
            points into blocks of `block` x `block` cells (by row, then by column), then an
            exact assignment inside each block; the points are a uniform sample there.

    Returns ``(grid, method)``: ``grid`` ``(rows, cols)`` int64 holds the row in `emb` of the
    point in each cell, -1 where empty (fewer points than cells); every point appears at most
    once. `method` says how it was solved.
    """
    if select not in ("nearest", "sample"):
        raise ConvlensError(f"select must be 'nearest' or 'sample', got {select!r}")
    n, m = len(emb), rows * cols
    if rows < 1 or cols < 1:
        raise ConvlensError(f"the grid needs at least one row and column, got {rows}x{cols}")
    pos = grid_positions(emb, rows, cols)
    rng_seed = seed + 1  # not the sample the metrics use
    if m > exact_max:
        points = sample_indices(n, m, rng_seed)
        p, c = _hierarchical(pos, points, rows, cols, block)
        method = f"hierarchical ({block}x{block} blocks)" + (", uniform sample" if n > m else "")
    else:
        if n > m and select == "sample":
            points, how = sample_indices(n, m, rng_seed), "uniform sample"
        elif n > m:
            points, how = sample_indices(n, CANDIDATES_PER_CELL * m, rng_seed), "nearest images"
            if n > CANDIDATES_PER_CELL * m:
                how += f" among {len(points)} sampled"
        else:
            points, how = np.arange(n), ""
        p, c = _exact(pos, points, _cells(rows, cols))
        method = "exact" + (f", {how}" if how else "")
    grid = np.full(m, -1, dtype=np.int64)
    grid[c] = p
    return grid.reshape(rows, cols), method


def grid_cost(emb: np.ndarray, grid: np.ndarray) -> float:
    """Total squared move (in cell units) of the points placed in `grid`."""
    rows, cols = grid.shape
    pos = grid_positions(emb, rows, cols)
    r, c = np.nonzero(grid >= 0)
    target = np.stack([r + 0.5, c + 0.5], 1)
    return float(((pos[grid[r, c]] - target) ** 2).sum())


def _grid_shape(grid, n: int) -> tuple[int, int]:
    if grid is None:
        side = max(1, min(GRID_SIDE, int(np.sqrt(n))))
        return side, side
    if isinstance(grid, (int, np.integer)):
        return int(grid), int(grid)
    rows, cols = grid
    return int(rows), int(cols)
