"""Make existing embeddings Matryoshka: a small learned transform whose prefixes keep the full-dim similarities.

Beyond the paper; after Yoon et al., "Matryoshka-Adaptor" (arXiv 2407.20243). Frozen embeddings e (from an API, a
vector database, GloVe, ...) are mapped by f(e) = P e + g(P e): P is a rotation initialised with the right singular
vectors of the (uncentred) embeddings (so training starts from the SVD ordering and, at the full dim, from exactly
the original cosine similarities), g is a small MLP whose output starts at zero. Trained without labels so that
for every prefix size m the cosine similarities of f(e)[:m] match those of the full e: a pairwise loss over a
batch, a top-k loss over each anchor's nearest neighbours in the batch, and a term keeping ||f(e)|| close to ||e||.
``loss="listwise"`` distils the full-dim neighbour ranks instead: for each anchor, a softmax over its exact full-dim
neighbours (found once, over the whole training set) and shared random rows, teacher = full-dim cosines, matched by
the same softmax at every prefix (KL divergence); it spends the small prefixes on who is near rather than on far pairs.
When (query, document) embedding pairs are known, ``fit(embeddings, pairs=(q, d))`` adds an in-batch-negatives
ranking loss at every prefix (the paper's Matryoshka loss around InfoNCE) to pull each query to its document.

Example::

    from matryoshka.posthoc import MatryoshkaAdaptor
    adaptor = MatryoshkaAdaptor(nesting=[4, 8, 16, 32, 50]).fit(embeddings)      # numpy (N, d)
    small = adaptor.transform(embeddings, dim=8)                                # (N, 8), unit rows
    adaptor.save("adaptor.safetensors"); MatryoshkaAdaptor.load("adaptor.safetensors")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from matryoshka.errors import InputError
from matryoshka.io import atomic_write_with
from matryoshka.nesting import nesting_list, nesting_weights, validate_nesting
from matryoshka.nn.losses import InfoNCELoss, MatryoshkaLoss
from matryoshka.progress import StepProgress


class _Transform(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.rotate = nn.Linear(dim, dim, bias=False)
        self.residual = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        h = self.rotate(e)
        return h + self.residual(h)


def _cos(x: torch.Tensor) -> torch.Tensor:
    x = nn.functional.normalize(x, dim=1)
    return x @ x.T


class MatryoshkaAdaptor:
    """``fit(embeddings)`` then ``transform(embeddings, dim)``; scikit-learn style.

    Args:
        nesting: prefix sizes trained and validated on (default: powers of two up to d, and d). A list that stops
            below d spends the whole transform on those prefixes; the dims above its largest then keep no promise
            (with d in the list, the full dim stays close to the original similarities).
        target_dims: the prefix sizes you will use: the kept state is the one with the best held-out recall@10
            averaged over these (default: every nesting dim, which favours the exact start at the large dims).
        hidden: width of the residual MLP.
        steps, batch_size, lr: optimisation (Adam) budget.
        topk: neighbours per anchor in the top-k loss; weights: (pairwise, top-k, reconstruction).
        loss: "similarity" (pairwise + top-k + reconstruction) or "listwise" (distilled neighbour ranks).
        neighbours, negatives, temperature: listwise candidates per anchor (exact full-dim neighbours, random rows
            shared by the batch) and softmax temperature.
        ranking_weight: weight of the supervised ranking loss (only when ``fit`` gets pairs).
        dim_weights: c_m per nesting dim, multiplying that prefix's terms (default: equal). The text trainer's fast
            path weighs the smallest prefixes more (``model.loss_weights``), which brings them closer to an adaptor
            fitted for their dim alone.
        validation: held-out rows (and pairs) scored by recall@10 every ``eval_every`` steps; the best state is kept.
        progress: report while fitting: a bar on a terminal; in a log, an early time estimate, a line every
            ``log_every`` steps (mean loss, rate, time left) and the held-out score at each evaluation.
        log_every: steps between those lines (default: about 20 lines per fit).

    Example::

        import numpy as np
        from matryoshka import MatryoshkaAdaptor

        embeddings = np.random.default_rng(0).standard_normal((2000, 32)).astype("float32")   # any frozen embeddings
        adaptor = MatryoshkaAdaptor(nesting=[4, 8, 16, 32], steps=50).fit(embeddings)
        small = adaptor.transform(embeddings, dim=8)          # (2000, 8), unit rows
    """

    def __init__(
        self,
        nesting: Sequence[int] | None = None,
        hidden: int = 256,
        steps: int = 2000,
        batch_size: int = 1024,
        lr: float = 1e-3,
        topk: int = 10,
        weights: tuple[float, float, float] = (1.0, 1.0, 0.1),
        validation: int = 2000,
        eval_every: int = 200,
        ranking_weight: float = 1.0,
        loss: Literal["similarity", "listwise"] = "similarity",
        neighbours: int = 50,
        negatives: int = 200,
        temperature: float = 0.05,
        target_dims: Sequence[int] | None = None,
        dim_weights: Sequence[float] | None = None,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = False,
        log_every: int | None = None,
    ) -> None:
        self.nesting = None if nesting is None else list(nesting)
        self.hidden, self.steps, self.batch_size, self.lr = hidden, steps, batch_size, lr
        self.topk, self.weights, self.validation, self.eval_every = topk, weights, validation, eval_every
        self.ranking_weight, self.seed, self.device, self.progress = ranking_weight, seed, device, progress
        self.log_every = max(1, steps // 20) if log_every is None else log_every
        if loss not in ("similarity", "listwise"):
            raise InputError(f"loss must be 'similarity' or 'listwise', got {loss!r}")
        self.loss, self.neighbours, self.negatives, self.temperature = loss, neighbours, negatives, temperature
        self.target_dims = None if target_dims is None else list(target_dims)
        self.dim_weights = None if dim_weights is None else list(dim_weights)
        self.transform_: _Transform | None = None

    def _check(self, embeddings: np.ndarray | torch.Tensor, dim: int | None = None) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
        if x.ndim != 2 or len(x) == 0:
            raise InputError(f"embeddings must be a non-empty (N, d) array, got shape {tuple(x.shape)}")
        if dim is not None and x.shape[1] != dim:
            raise InputError(f"the adaptor was fitted on {dim}-dim embeddings, got {x.shape[1]}")
        if not torch.isfinite(x).all():
            raise InputError("embeddings contain NaN or infinite values")
        return x

    def _loss(self, f: _Transform, batch: torch.Tensor) -> torch.Tensor:
        out = f(batch)
        target = _cos(batch)
        k = min(self.topk + 1, len(batch))
        top = target.topk(k, dim=1).indices
        w_pair, w_top, w_rec = self.weights
        loss = w_rec * (out.norm(dim=1) - batch.norm(dim=1)).pow(2).mean()
        for c, m in zip(self.dim_weights_, self.nesting_, strict=True):
            sim = _cos(out[:, :m])
            loss = loss + c * w_pair * (sim - target).abs().mean()
            loss = loss + c * w_top * (sim.gather(1, top) - target.gather(1, top)).abs().mean()
        return loss

    def _listwise_loss(
        self, f: _Transform, train: torch.Tensor, anchors: torch.Tensor, near: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        """KL(full-dim softmax || prefix softmax) over each anchor's exact neighbours and shared random rows."""
        b = min(self.batch_size // 4, len(anchors))
        pick = torch.randint(0, len(anchors), (b,), generator=g)
        shared = torch.randint(0, len(train), (min(self.negatives, len(train)),), generator=g)
        a, cand_near, cand_random = (
            t.to(self.device) for t in (train[anchors[pick]], train[near[pick]], train[shared])
        )
        unit = nn.functional.normalize
        candidates = torch.cat([cand_near, cand_random.expand(b, -1, -1)], dim=1)  # (b, n + r, d)
        teacher = torch.einsum("bd,bcd->bc", unit(a, dim=1), unit(candidates, dim=2)) / self.temperature
        target = teacher.log_softmax(1)
        fa, fn, fr = f(a), f(cand_near), f(cand_random)
        loss = self.weights[2] * (fa.norm(dim=1) - a.norm(dim=1)).pow(2).mean()
        for c, m in zip(self.dim_weights_, self.nesting_, strict=True):
            qa, qn, qr = unit(fa[:, :m], dim=1), unit(fn[:, :, :m], dim=2), unit(fr[:, :m], dim=1)
            student = torch.cat([torch.einsum("bd,bcd->bc", qa, qn), qa @ qr.T], dim=1) / self.temperature
            kl = nn.functional.kl_div(student.log_softmax(1), target, log_target=True, reduction="batchmean")
            loss = loss + c * kl
        return loss

    def _neighbour_lists(self, train: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchor rows, their exact full-dim cosine neighbours among all training rows, nearest first)."""
        import faiss

        from matryoshka.index.storage import normalize

        anchors = torch.randperm(len(train), generator=g)[: min(len(train), 50_000)]
        unit = normalize(train.numpy())
        k = min(self.neighbours + 1, len(train))
        _, near = faiss.knn(unit[anchors.numpy()], unit, k, metric=faiss.METRIC_INNER_PRODUCT)
        return anchors, torch.from_numpy(near[:, 1:]).long()  # the anchor itself comes first

    def fit(
        self,
        embeddings: np.ndarray | torch.Tensor,
        pairs: tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor] | None = None,
    ) -> MatryoshkaAdaptor:
        """Learn the transform from unlabeled ``embeddings`` (N, d), plus optional (queries, documents) pairs."""
        x, queries, documents = self._check_fit(embeddings, pairs)
        n = len(x)
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        perm = torch.randperm(n, generator=g)
        n_val = min(self.validation, n // 5)
        val, train = x[perm[:n_val]], x[perm[n_val:]]
        val_pairs = None
        if pairs is not None:  # hold out pairs too: the kept state is the one that ranks unseen pairs best
            pair_perm = torch.randperm(len(queries), generator=g)
            n_val_pairs = min(self.validation, len(queries) // 5)
            held, kept = pair_perm[:n_val_pairs], pair_perm[n_val_pairs:]
            val_pairs = (queries[held], documents[held]) if n_val_pairs >= 12 else None
            queries, documents = queries[kept], documents[kept]
        f = self._initial_transform(train).to(self.device)
        opt = torch.optim.Adam(f.parameters(), lr=self.lr)
        best = (self._score(f, val, val_pairs), {k: v.clone() for k, v in f.state_dict().items()})
        self.history_ = [{"step": 0, "val_recall": best[0]}]
        ranking = None
        if pairs is not None:
            ranking = MatryoshkaLoss(InfoNCELoss(symmetric=True), self.nesting_, self.dim_weights_)
        lists = self._neighbour_lists(train, g) if self.loss == "listwise" else None
        report = StepProgress(0, self.steps, self.steps, self.log_every, enabled=self.progress, name="fitting adaptor")
        with report:
            report.start_epoch(1, 1, 0)
            running = torch.zeros((), device=self.device)
            for step in range(1, self.steps + 1):
                loss = self._step_loss(f, train, lists, ranking, queries, documents, g)
                opt.zero_grad()
                loss.backward()
                opt.step()
                running += loss.detach()  # summed on the device: read only when a line prints
                logging_now = self.log_every and step % self.log_every == 0
                report.step(step, (running / self.log_every).item() if logging_now else None)
                if logging_now:
                    running.zero_()
                if step % self.eval_every == 0 or step == self.steps:
                    score = self._score(f, val, val_pairs)
                    self.history_.append({"step": step, "loss": loss.item(), "val_recall": score})
                    if score > best[0]:
                        best = (score, {k: v.clone() for k, v in f.state_dict().items()})
                    report.print(f"fitting adaptor: step {step}/{self.steps} held-out recall@10 {score:.3f}")
        f.load_state_dict(best[1])
        self.transform_ = f.eval()
        return self

    def _step_loss(
        self, f: _Transform, train: torch.Tensor, lists: Any, ranking: Any, queries: Any, documents: Any, g: Any
    ) -> torch.Tensor:
        """One batch's loss: the similarity (or listwise) terms, plus the ranking loss when pairs were given."""
        if lists is not None:
            loss = self._listwise_loss(f, train, *lists, g)
        else:
            idx = torch.randint(0, len(train), (min(self.batch_size, len(train)),), generator=g)
            loss = self._loss(f, train[idx].to(self.device))
        if ranking is not None:
            pick = torch.randint(0, len(queries), (min(self.batch_size, len(queries)),), generator=g)
            q, doc = f(queries[pick].to(self.device)), f(documents[pick].to(self.device))
            loss = loss + self.ranking_weight * ranking(q, doc)
        return loss

    def _check_fit(self, embeddings: Any, pairs: Any) -> tuple[torch.Tensor, Any, Any]:
        """Checked (embeddings, queries, documents); sets ``dim_``, ``nesting_``, ``target_dims_``, ``dim_weights_``."""
        x = self._check(embeddings)
        d = x.shape[1]
        queries = documents = None
        if pairs is not None:
            queries, documents = self._check(pairs[0], d), self._check(pairs[1], d)
            if len(queries) != len(documents) or len(queries) < 2:
                raise InputError(
                    f"pairs need as many queries as documents (>= 2), got {len(queries)}, {len(documents)}"
                )
        self.dim_ = d
        self.nesting_ = validate_nesting(self.nesting) if self.nesting else nesting_list(d, min(8, d))
        if self.nesting_[-1] > d:
            raise InputError(f"nesting dim {self.nesting_[-1]} is larger than the embeddings' {d} dims")
        self.target_dims_ = validate_nesting(self.target_dims) if self.target_dims else self.nesting_
        self.dim_weights_ = nesting_weights(self.nesting_, self.dim_weights)
        if self.target_dims_[-1] > d:
            raise InputError(f"target dim {self.target_dims_[-1]} is larger than the embeddings' {d} dims")
        return x, queries, documents

    def _initial_transform(self, train: torch.Tensor) -> _Transform:
        """Start from the SVD basis, largest singular value first. No centring: a rotation of the raw vectors keeps
        every cosine similarity, so the full dim starts exact."""
        d = train.shape[1]
        f = _Transform(d, self.hidden)
        sample = train[: min(len(train), 100_000)]
        # Fewer rows than dims: the full basis completes the rotation with directions the data does not use.
        _, _, vh = torch.linalg.svd(sample, full_matrices=len(sample) < d)
        with torch.no_grad():
            f.rotate.weight.copy_(vh)
        return f

    @torch.no_grad()
    def _score(
        self, f: _Transform, val: torch.Tensor, val_pairs: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> float:
        """Mean over the target dims of recall@10 of full-dim neighbours within the validation rows; with held-out
        pairs, mean over the target dims of each query's hit rate for its document in the top 10 instead."""
        if val_pairs is not None:
            q, d = (f(t.to(self.device)) for t in val_pairs)
            hits = []
            for m in self.target_dims_:
                scores = _cos_between(q[:, :m], d[:, :m])
                top = scores.topk(min(10, len(d)), dim=1).indices
                hits.append((top == torch.arange(len(q), device=top.device)[:, None]).any(1).float().mean().item())
            return float(np.mean(hits))
        if len(val) < 12:
            return 0.0
        val = val.to(self.device)
        out = f(val)
        truth = _knn(val, 10)
        return float(np.mean([_recall(_knn(out[:, :m], 10), truth) for m in self.target_dims_]))

    @torch.no_grad()
    def transform(self, embeddings: np.ndarray | torch.Tensor, dim: int | None = None, normalize: bool = True):
        """Adapted embeddings (numpy), truncated to ``dim`` and L2-normalised unless ``normalize=False``."""
        if self.transform_ is None:
            raise RuntimeError("the adaptor is not fitted: call fit() or load()")
        x = self._check(embeddings, self.dim_)
        dim = dim or self.dim_
        if not 1 <= dim <= self.dim_:
            raise InputError(f"dim must be in [1, {self.dim_}], got {dim}")
        out = torch.cat([self.transform_(x[s : s + 65536].to(self.device)).cpu() for s in range(0, len(x), 65536)])
        out = out[:, :dim]
        return (nn.functional.normalize(out, dim=1) if normalize else out).numpy()

    def save(self, path: str | Path) -> None:
        if self.transform_ is None:
            raise RuntimeError("the adaptor is not fitted")
        meta = {"dim": str(self.dim_), "hidden": str(self.hidden), "nesting": json.dumps(self.nesting_)}
        state = {k: v.detach().cpu().contiguous() for k, v in self.transform_.state_dict().items()}
        atomic_write_with(Path(path), lambda tmp: save_file(state, tmp, metadata=meta))

    @classmethod
    def load(cls, path: str | Path) -> MatryoshkaAdaptor:
        from safetensors import SafetensorError, safe_open

        if not Path(path).exists():
            raise InputError(f"adaptor file {path} does not exist")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata()
        except (SafetensorError, OSError) as e:
            raise InputError(f"{path} is not a readable adaptor file: {e}") from e
        if not meta or "nesting" not in meta:
            raise InputError(f"{path} is a safetensors file but not a Matryoshka adaptor (no adaptor metadata)")
        adaptor = cls(nesting=json.loads(meta["nesting"]), hidden=int(meta["hidden"]))
        adaptor.dim_, adaptor.nesting_ = int(meta["dim"]), json.loads(meta["nesting"])
        transform = _Transform(adaptor.dim_, adaptor.hidden)
        transform.load_state_dict(load_file(str(path)))
        adaptor.transform_ = transform.eval()
        return adaptor


def _cos_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(a, dim=1) @ nn.functional.normalize(b, dim=1).T


def _knn(x: torch.Tensor, k: int) -> torch.Tensor:
    s = _cos(x)
    s.fill_diagonal_(-float("inf"))
    return s.topk(k, dim=1).indices


def _recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    hits = (found[:, :, None] == truth[:, None, :]).any(-1).float().sum(1)
    return (hits / truth.shape[1]).mean().item()
