"""Predictions of every item with its metadata: the reducer of the dataset pass.

Per image: the top-5 classes and their probabilities, the probability of the true label and
whether the top-1 is right, beside the item's scalar metadata (its attributes), so that
accuracy can be binned by attribute later (METHODS.md §8, Russakovsky et al. §6.3).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.labels import LabelMap
from ...engine import Reducer


def scalar_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The scalar entries of an item's metadata (numbers, strings, booleans)."""
    out = {}
    for k, v in meta.items():
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or isinstance(v, (bool, int, float, str)):
            out[k] = v
    return out


PREDICTION_COLUMNS = ("index", "label", "pred", "correct", "p_true", "p_pred", "top5", "top5_prob")


class Predictions(Reducer):
    """Per image: top-5 classes and probabilities (softmax of the logits), the probability of
    the true label, correct or not (null where the data's label names no class of the model:
    see `label_map`), plus the item's scalar metadata (Russakovsky et al. §6.3
    bin accuracy by such attributes; METHODS.md §8).

    Rows are buffered and written as a Parquet part at each checkpoint (`state_dict`) into
    `folder`; `finalize` joins the parts into one table sorted by index. Ties between equal
    probabilities go to the smaller class index.
    """

    layers: list[str] = []

    def __init__(self, folder: str | os.PathLike | None = None, top: int = 5,
                 label_map: LabelMap | None = None):
        self.folder = None if folder is None else Path(folder)
        self.top = int(top)
        self.label_map = label_map
        self.parts: list[str] = []
        self.rows = 0
        self._buf: list[dict[str, Any]] = []

    def update(self, batch, acts, logits) -> None:
        p = torch.softmax(logits.detach().float(), dim=1)
        k = min(self.top, p.shape[1])
        prob, cls = torch.sort(p, dim=1, descending=True, stable=True)
        prob, cls = prob[:, :k].cpu(), cls[:, :k].cpu()
        labels = batch.labels.cpu()
        # the data's label, as the model's class it names (-1: none, e.g. unrelated names)
        target = (torch.as_tensor(self.label_map.model_class(labels.numpy()))
                  if self.label_map is not None else labels)
        valid = (target >= 0) & (target < p.shape[1])
        p_true = torch.where(valid,
                             p.cpu().gather(1, target.clamp(0, p.shape[1] - 1)[:, None])[:, 0],
                             torch.tensor(float("nan")))
        self._buf.append({
            "index": batch.indices.numpy().astype(np.int64),
            "label": labels.numpy().astype(np.int64),
            "pred": cls[:, 0].numpy().astype(np.int64),
            "correct": (cls[:, 0] == target).numpy(), "valid": valid.numpy(),
            "p_true": p_true.numpy().astype(np.float32),
            "p_pred": prob[:, 0].numpy().astype(np.float32),
            "top5": cls.numpy().astype(np.int64), "top5_prob": prob.numpy().astype(np.float32),
            "meta": [scalar_meta(m) for m in batch.meta]})

    def table(self):
        """The buffered rows as a `pyarrow.Table` (and the buffer emptied)."""
        import pyarrow as pa

        bufs, self._buf = self._buf, []
        if not bufs:
            return None
        cols = {c: np.concatenate([b[c] for b in bufs]) for c in PREDICTION_COLUMNS}
        metas = [m for b in bufs for m in b["meta"]]
        arrays = {c: pa.array(cols[c]) for c in PREDICTION_COLUMNS[:6]}
        # correct is unknown (null) where the label names no class of the model
        arrays["correct"] = pa.array(cols["correct"],
                                     mask=~np.concatenate([b["valid"] for b in bufs]))
        for c in ("top5", "top5_prob"):
            arrays[c] = pa.FixedSizeListArray.from_arrays(pa.array(cols[c].ravel()),
                                                          cols[c].shape[1]).cast(
                pa.list_(pa.int64() if c == "top5" else pa.float32()))
        keys = list(dict.fromkeys(k for m in metas for k in m))
        for key in keys:
            name = key if key not in arrays else f"meta_{key}"
            try:
                arrays[name] = pa.array([m.get(key) for m in metas])
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
                arrays[name] = pa.array([None if m.get(key) is None else str(m[key])
                                         for m in metas])
        return pa.table(arrays)

    def flush(self) -> None:
        """Write the buffered rows as the next Parquet part."""
        import pyarrow.parquet as pq

        if self.folder is None:
            return
        t = self.table()
        if t is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(self.parts):06d}.parquet"
        tmp = self.folder / (name + ".tmp")
        pq.write_table(t, tmp)
        os.replace(tmp, self.folder / name)
        self.parts.append(name)
        self.rows += t.num_rows

    def merge(self, other: "Predictions") -> "Predictions":
        self._buf.extend(other._buf)
        return self

    def spawn(self) -> "Predictions":
        return Predictions(None, self.top, self.label_map)

    def state_dict(self):
        self.flush()
        return {"parts": list(self.parts), "rows": self.rows, "top": self.top}

    def load_state_dict(self, state):
        self.parts, self.rows, self.top = (list(state["parts"]), int(state["rows"]),
                                           int(state["top"]))
        self._buf = []
        if self.folder is not None and self.folder.is_dir():
            keep = set(self.parts)  # parts written after the checkpoint are redone: drop them
            for f in self.folder.iterdir():
                if f.name not in keep:
                    f.unlink()

    def finalize(self, path: str | os.PathLike) -> int:
        """Join the parts into one Parquet table at `path`, sorted by index; returns its rows.

        Parts that hold disjoint, increasing index ranges (a sequential or sharded pass) are
        streamed one at a time; otherwise (a shuffled pass) the table is sorted in memory.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.flush()
        files = [self.folder / p for p in self.parts]
        if not files:
            empty = pa.table({"index": pa.array([], pa.int64()), "label": pa.array([], pa.int64()),
                              "pred": pa.array([], pa.int64()), "correct": pa.array([], pa.bool_()),
                              "p_true": pa.array([], pa.float32()),
                              "p_pred": pa.array([], pa.float32()),
                              "top5": pa.array([], pa.list_(pa.int64())),
                              "top5_prob": pa.array([], pa.list_(pa.float32()))})
            pq.write_table(empty, path)
            return 0
        schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")

        def load(f):
            t = pq.read_table(f)
            for field in schema:
                if field.name not in t.column_names:
                    t = t.append_column(field.name, pa.nulls(t.num_rows, field.type))
            return t.select(schema.names).cast(schema)

        ranges = []
        for f in files:
            idx = pq.read_table(f, columns=["index"]).column(0).to_numpy()
            ranges.append((int(idx.min()), int(idx.max()), bool(np.all(np.diff(idx) > 0)), f))
        ranges.sort(key=lambda r: r[0])
        streamable = all(r[2] for r in ranges) and all(
            a[1] < b[0] for a, b in zip(ranges, ranges[1:]))
        tmp = Path(str(path) + ".tmp")
        if streamable:
            with pq.ParquetWriter(tmp, schema) as w:
                for r in ranges:
                    w.write_table(load(r[3]))
        else:
            t = pa.concat_tables([load(f) for f in files]).sort_by("index")
            pq.write_table(t, tmp)
        os.replace(tmp, path)
        return self.rows
