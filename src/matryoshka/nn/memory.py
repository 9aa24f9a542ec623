"""CandidateMemory: the documents of the last few batches, kept as extra candidates for the next ones.

A batch of 64 pairs gives each query 63 wrong documents; a test corpus has thousands. The smaller a prefix, the more
it loses exactly there: among many near candidates. A cross-batch memory (Wang et al., "Cross-Batch Memory for
Embedding Learning", CVPR 2020, arXiv 1912.06798) keeps the embeddings each step already computed for its documents
(detached, so it costs no encoder pass) and offers the newest ``size`` of them to later batches, as negatives of the
Matryoshka loss at every dim and as candidates of the full-dim -> prefix distillation
(:class:`~matryoshka.nn.distillation.PrefixDistillationLoss`). The encoder moves slowly at fine-tuning learning rates,
so embeddings a few dozen steps old are still close to what the model gives now.

Each stored row remembers integer keys of its pair (e.g. its query text and its document text); ``mask_for`` tells
which rows must not count against a query because they share a key with its own pair: its own document again, or
another relevant document of the same query text (a WordNet lemma of several synsets).

Example::

    import torch
    from matryoshka.nn.memory import CandidateMemory

    memory = CandidateMemory(size=256, dim=64)
    memory.add(torch.randn(32, 64), keys=torch.arange(32))
    candidates = memory.rows()                                   # (32, 64): the rows kept so far, oldest first
    same_pair = memory.mask_for(torch.tensor([3, 99]))           # (2, 32): True where a row shares that key
"""

from __future__ import annotations

from typing import Any

import torch


class CandidateMemory:
    """A first-in-first-out store of the newest ``size`` document embeddings and their pairs' integer keys.

    Args:
        size: rows kept; older ones are overwritten.
        dim: the embedding width.
        key_columns: keys per row (e.g. 2: a query id and a document id); a row is a query's own when any of its
            keys equals that query's key in the same column.
    """

    def __init__(self, size: int, dim: int, device: torch.device | str = "cpu", key_columns: int = 1) -> None:
        if size < 1:
            raise ValueError(f"a candidate memory needs size >= 1, got {size}")
        self.size = size
        self.vectors = torch.zeros(size, dim, device=device)
        self.keys = torch.full((size, key_columns), -1, dtype=torch.long, device=device)
        self.filled = 0
        self.next = 0  # the slot the next row goes to

    def __len__(self) -> int:
        return self.filled

    def _key_rows(self, keys: torch.Tensor) -> torch.Tensor:
        keys = keys.to(self.keys).reshape(len(keys), -1)
        if keys.shape[1] != self.keys.shape[1]:
            raise ValueError(f"expected {self.keys.shape[1]} key(s) per row, got {keys.shape[1]}")
        return keys

    def add(self, vectors: torch.Tensor, keys: torch.Tensor) -> None:
        """Store ``vectors`` (detached) with the integer keys of each row's pair; the oldest rows make room."""
        if vectors.ndim != 2 or vectors.shape[1] != self.vectors.shape[1] or len(keys) != len(vectors):
            raise ValueError(
                f"expected (n, {self.vectors.shape[1]}) vectors and keys for n rows, got {tuple(vectors.shape)} and "
                f"{len(keys)}"
            )
        vectors = vectors.detach().to(self.vectors)[-self.size :]
        keys = self._key_rows(keys)[-self.size :]
        slots = (self.next + torch.arange(len(vectors), device=self.keys.device)) % self.size
        self.vectors[slots] = vectors
        self.keys[slots] = keys
        self.next = int((self.next + len(vectors)) % self.size)
        self.filled = min(self.size, self.filled + len(vectors))

    def _order(self) -> torch.Tensor:
        start = self.next if self.filled == self.size else 0
        return (start + torch.arange(self.filled, device=self.keys.device)) % self.size

    def rows(self) -> torch.Tensor:
        """The stored embeddings, oldest first: (len(self), dim)."""
        return self.vectors[self._order()]

    def mask_for(self, keys: torch.Tensor) -> torch.Tensor:
        """(len(keys), len(self)): True where a stored row shares a key (in the same column) with that row of
        ``keys``."""
        return (self._key_rows(keys)[:, None, :] == self.keys[self._order()][None, :, :]).any(-1)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to go on exactly where a run stopped (saved with its checkpoints)."""
        return {"vectors": self.vectors.cpu(), "keys": self.keys.cpu(), "filled": self.filled, "next": self.next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["vectors"].shape) != tuple(self.vectors.shape):
            raise ValueError(
                f"the saved memory holds {tuple(state['vectors'].shape)} rows, this one {tuple(self.vectors.shape)}"
            )
        self.vectors.copy_(state["vectors"])
        self.keys.copy_(state["keys"])
        self.filled, self.next = int(state["filled"]), int(state["next"])
