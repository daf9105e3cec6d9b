"""Row-by-row access to a Dataset, as cryosparc-tools' ``Row``.

A Row is a dataset and a row index: it reads the dataset's columns when
asked (so it stays valid when a column is replaced) and writes into them.
Strings read as ``str``. Slow by nature: use columns for bulk work.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .strings import decode_value

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["Row"]


def python_value(col: np.ndarray, i: int) -> Any:
    """Row i of a column as plain Python: str for strings, lists for sub-arrays."""
    value = col[i]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            return [decode_value(v) for v in value.tolist()]
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


class Row(Mapping):
    """One row of a dataset: ``row[field]``, ``row[field] = value``, ``row.to_dict()``."""

    __slots__ = ("dataset", "idx")

    def __init__(self, dataset: Dataset, idx: int):
        self.dataset = dataset
        self.idx = idx

    def __getitem__(self, key: str) -> Any:
        return self.dataset[key][self.idx]

    def __setitem__(self, key: str, value: Any) -> None:
        self.dataset[key][self.idx] = value

    def __len__(self) -> int:
        return len(self.dataset.fields())

    def __iter__(self) -> Iterator[str]:
        return iter(self.dataset.fields())

    def __contains__(self, key: object) -> bool:
        return key in self.dataset

    def item(self, key: str, default: Any = None) -> Any:
        """The field's value as plain Python, or default if the dataset has no such field."""
        return python_value(self.dataset[key], self.idx) if key in self else default

    def to_list(self, exclude_uid: bool = False) -> list:
        """Values as plain Python in field order (sub-arrays as lists, strings as str)."""
        return [
            python_value(self.dataset[k], self.idx)
            for k in self
            if not (exclude_uid and k == "uid")
        ]

    def to_dict(self) -> dict[str, Any]:
        """{field: value as plain Python} (sub-arrays as lists, strings as str)."""
        return {k: python_value(self.dataset[k], self.idx) for k in self}

    def to_item_dict(self) -> dict[str, Any]:
        """{field: value as ``row[field]`` gives it} (numpy scalars, sub-array views, str)."""
        return {k: self[k] for k in self}

    def from_dict(self, d: Mapping[str, Any]) -> None:
        """Set every field from d (which must hold them all)."""
        for k in self:
            self[k] = d[k]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.idx}, {self.to_dict()!r})"
