"""The torch side of the dataset reader: a ``Dataset`` that fetches whole batches shard-wise.

``DataLoader(ShardDataset(ref), batch_size=B, collate_fn=passthrough, ...)`` yields dicts of
uint8 tensors (B×H×W×C images, B×H×W masks) decoded straight into shared memory in the worker:
no per-sample tensors, no collate copy. zoo reads datasets only through this adapter, which
reads only through ``pipelines.open_dataset``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipelines import open_dataset

IMAGE_FIELDS = ("clean", "degraded", "mask")


def passthrough(batch: Any) -> Any:
    """collate_fn for a dataset whose ``__getitems__`` already returns a batch."""
    return batch


class ShardDataset(torch.utils.data.Dataset):
    """Samples of a dataset version as uint8 tensors, batched by ``__getitems__``."""

    def __init__(self, ref: str, fields: tuple[str, ...] = ("degraded", "clean", "mask")) -> None:
        self.ref = str(ref)
        self.ds = open_dataset(ref)  # pickles to its path; reopens lazily in each worker
        missing = [f for f in fields if f not in self.ds.fields]
        if missing:
            from degrade.errors import DaguerreError

            raise DaguerreError(f"dataset {ref} has no field {missing[0]!r} (has {', '.join(self.ds.fields)})")
        self.fields = tuple(fields)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = np.asarray(indices, dtype=np.int64)  # a bad index is refused by the reads below
        out: dict[str, Any] = {"index": torch.as_tensor(np.where(index < 0, index + len(self.ds), index))}  # -1: the last, as ds[-1] says
        shared = torch.utils.data.get_worker_info() is not None
        for f in self.fields:
            if f in IMAGE_FIELDS:
                one = self.ds.sample_shape(f)
                shape = (len(indices), *one) if one else None
                t = torch.empty(shape, dtype=torch.uint8) if shape else None
                if t is not None and shared:
                    t.share_memory_()  # decoded once, in place, into what the main process receives
                arr = self.ds.read_many(f, indices, out=t.numpy() if t is not None else None)
                out[f] = t if t is not None else torch.from_numpy(np.ascontiguousarray(arr))
            else:
                out[f] = [self.ds.read(f, i) for i in indices]
        return out
