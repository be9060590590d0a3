"""Checkpoints of a dataset pass: the reducers' states and the position, written atomically.

A pass is identified by a fingerprint (model weights, data, order of items, settings); a
checkpoint of another pass is refused rather than silently continued.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..errors import ConvlensError
from .reducer import Reducer


@dataclass
class PassInfo:
    """What a pass did: items read (good + skipped), skipped items, where it resumed, time."""

    seen: int = 0
    skipped: int = 0
    skipped_sources: list[str] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of this process (not of data-loader workers)

    @property
    def images(self) -> int:
        return self.seen - self.skipped

    def add_skipped(self, sources: Iterable[str]) -> None:
        for s in sources:
            self.skipped += 1
            if len(self.skipped_sources) < 100:  # enough to find the bad files; bounded
                self.skipped_sources.append(str(s))

    def state(self) -> dict[str, Any]:
        return {"seen": self.seen, "skipped": self.skipped,
                "skipped_sources": list(self.skipped_sources)}


def fingerprint_model(lens) -> str:
    """A hash of the model's parameters and buffers (resume only with the same weights)."""
    h = hashlib.sha1()
    for name, t in list(lens.state_dict().items()):
        h.update(name.encode())
        t = t.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint_order(order: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(order, dtype=np.int64).tobytes()).hexdigest()


class Checkpoint:
    """The reducers' states and the pass's position, written atomically to `path`.

    ``save`` asks every reducer for its ``state_dict`` (which also makes its on-disk output
    durable), then writes ``torch.save`` to a temporary file, fsyncs it and renames it over
    the old checkpoint: a kill at any moment leaves the previous or the new checkpoint whole.
    `fingerprint` says what the pass computes; resuming a different pass is refused.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any]):
        self.path = Path(path)
        self.fingerprint = fingerprint

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, weights_only=True)
        except Exception as e:  # noqa: BLE001  a damaged file: say so, do not guess
            raise ConvlensError(f"cannot read checkpoint {self.path} ({e}); delete it or "
                                "run again without resume") from None
        if state.get("fingerprint") != self.fingerprint:
            old = state.get("fingerprint") or {}
            diff = sorted(k for k in set(old) | set(self.fingerprint)
                          if old.get(k) != self.fingerprint.get(k))
            raise ConvlensError(
                f"{self.path} is the checkpoint of a different scan (differs in: "
                f"{', '.join(diff)}): use another output folder, or resume=False "
                "(--no-resume) to start again")
        return state

    def save(self, position: int, reducers: Sequence[Reducer], info: PassInfo) -> None:
        state = {"fingerprint": self.fingerprint, "position": int(position),
                 "info": info.state(), "reducers": [r.state_dict() for r in reducers]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def restore(self, reducers: Sequence[Reducer], info: PassInfo) -> int:
        """Load the checkpoint (if any) into `reducers` and `info`; returns the position."""
        state = self.load()
        if state is None:
            return 0
        for r, s in zip(reducers, state["reducers"]):
            r.load_state_dict(s)
        i = state["info"]
        info.seen, info.skipped = int(i["seen"]), int(i["skipped"])
        info.skipped_sources = list(i["skipped_sources"])
        info.resumed_from = int(state["position"])
        return int(state["position"])

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
