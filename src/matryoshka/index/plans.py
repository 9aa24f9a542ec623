"""Search plans: which prefix sizes a query goes through and how many candidates survive each stage.

* ``FullPlan()``: exact search at the full dim (the baseline).
* ``AdaptivePlan(shortlist_dim, shortlist_k, rerank_dim)``: the paper's adaptive retrieval: shortlist K
  candidates over the whole corpus with D_s dims, re-rank them with D_r dims.
* ``FunnelPlan([(dim, k), ...])``: funnel retrieval: the first stage shortlists over the corpus, each later
  stage re-ranks the previous stage's survivors with more dims and keeps fewer (paper: 16->32->64->128->256->2048
  dims with K 200->100->50->25->10).

Plans parse from strings for the CLI: ``full``, ``adaptive:16:200:512``, ``funnel:16x200,32x100,64x50,512x10``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from matryoshka.errors import InputError


@dataclass(frozen=True)
class FullPlan:
    """Exact search at the full dim (the reference every other plan is measured against).

    Example::

        import numpy as np
        from matryoshka import FullPlan, MatryoshkaIndex

        x = np.random.default_rng(0).standard_normal((500, 32)).astype("float32")
        index = MatryoshkaIndex(32, shortlist_dims=[8])
        index.add(x)
        scores, ids = index.search(x[:1], k=3, plan=FullPlan())  # exact cosine search at the full dim
    """

    def stages(self, dim: int, k: int) -> list[tuple[int, int]]:
        return [(dim, k)]


@dataclass(frozen=True)
class AdaptivePlan:
    """Shortlist ``shortlist_k`` candidates at ``shortlist_dim`` dims, re-rank them at ``rerank_dim``.

    Example::

        import numpy as np
        from matryoshka import AdaptivePlan, MatryoshkaIndex

        x = np.random.default_rng(0).standard_normal((2000, 64)).astype("float32")
        index = MatryoshkaIndex(64, shortlist_dims=[16])
        index.add(x)
        plan = AdaptivePlan(16, 100, 64)  # 100 candidates at 16 dims, re-ranked at 64
        scores, ids = index.search(x[:2], k=5, plan=plan)
        assert ids[0, 0] == 0
    """

    shortlist_dim: int
    shortlist_k: int
    rerank_dim: int

    def stages(self, dim: int, k: int) -> list[tuple[int, int]]:
        return [(self.shortlist_dim, self.shortlist_k), (self.rerank_dim, k)]


@dataclass(frozen=True)
class FunnelPlan:
    """Shortlist and re-rank repeatedly: ``steps`` are (dim, candidates kept) with growing dims.

    Example::

        import numpy as np
        from matryoshka import FunnelPlan, MatryoshkaIndex

        x = np.random.default_rng(0).standard_normal((2000, 64)).astype("float32")
        index = MatryoshkaIndex(64, shortlist_dims=[8])
        index.add(x)
        plan = FunnelPlan([(8, 400), (32, 50), (64, 10)])  # growing dims, shrinking candidate counts
        scores, ids = index.search(x[:2], k=10, plan=plan)
    """

    steps: tuple[tuple[int, int], ...]

    def __init__(self, steps) -> None:
        object.__setattr__(self, "steps", tuple((int(d), int(k)) for d, k in steps))

    def stages(self, dim: int, k: int) -> list[tuple[int, int]]:
        stages = list(self.steps)
        last_dim = stages[-1][0]
        return [*stages[:-1], (last_dim, k)]


Plan = FullPlan | AdaptivePlan | FunnelPlan


def scaled(plan: Plan, factor: float) -> Plan:
    """The plan with every candidate count K multiplied by ``factor`` (rounded up): a plan tuned for k results
    serves ``factor * k`` with the same shortlist depth per result."""
    if isinstance(plan, AdaptivePlan):
        return AdaptivePlan(plan.shortlist_dim, int(np.ceil(plan.shortlist_k * factor)), plan.rerank_dim)
    if isinstance(plan, FunnelPlan):
        return FunnelPlan([(d, int(np.ceil(kk * factor))) for d, kk in plan.steps])
    return plan


def validate_stages(stages: list[tuple[int, int]], dim: int, k: int) -> None:
    """Dims must grow (or stay) within [1, dim]; candidate counts must shrink (or stay) and be >= k."""
    if not stages:
        raise InputError("a plan needs at least one stage")
    prev_dim, prev_k = 0, None
    for d, kk in stages:
        if kk < 1:
            raise InputError(f"plan stage {(d, kk)} keeps no candidates: K must be > 0")
        if not 1 <= d <= dim:
            raise InputError(f"plan dim {d} must be in [1, {dim}]")
        if d < prev_dim:
            raise InputError(f"plan dims must not shrink from stage to stage: {stages}")
        if prev_k is not None and kk > prev_k:
            raise InputError(f"plan candidate counts must not grow from stage to stage: {stages}")
        if kk < k:
            raise InputError(f"stage {(d, kk)} keeps fewer than the k={k} results asked for")
        prev_dim, prev_k = d, kk


def check_k(k: object) -> None:
    """``k`` (results per query) must be a positive int."""
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise InputError(f"k must be a positive int, got {k!r}")


def plan_or_default(plan: Plan | str | None, default: str | None, default_k: int, k: int) -> Plan | str | None:
    """``plan``; when None, the ``default`` plan (text) tuned for ``default_k`` results, its candidate counts scaled
    up for a larger ``k`` (as deep a shortlist per result as it was tuned for)."""
    if plan is not None or default is None:
        return plan
    tuned = parse_plan(default)
    return scaled(tuned, k / default_k) if k > default_k else tuned


def checked_stages(
    plan: Plan | str | None, k: int, dim: int, structures: list[int], n: int, exact: bool = False
) -> list[tuple[int, int]]:
    """A plan's (dim, K) stages for ``k`` results over ``n`` vectors, checked, with K cut to ``n``.

    ``plan`` may be a plan, its text (:func:`parse_plan`) or None (full). A first stage below the full dim needs a
    shortlist structure for its dim (``structures``) unless ``exact`` allows a full scan there.
    """
    check_k(k)
    if isinstance(plan, str):
        plan = parse_plan(plan)
    stages = (plan or FullPlan()).stages(dim, k)
    validate_stages(stages, dim, k)
    d0 = stages[0][0]
    if d0 < dim and d0 not in structures and not exact:
        raise InputError(
            f"the plan shortlists with {d0} dims but the index has shortlist structures only for {structures}: use "
            'one of those, or ask for an exact (full-scan) first stage (exact=True, --exact, or "exact": true)'
        )
    return [(d, min(kk, n)) for d, kk in stages]


def check_rotated_stages(stages: list[tuple[int, int]], dim: int, structures: list[int]) -> None:
    """An index with rotated prefixes holds them only in its shortlist structures: every stage below the full dim
    must be one of those dims, and the last stage the full dim (the stored rows, in which every score is exact)."""
    for d, _ in stages:
        if d < dim and d not in structures:
            raise InputError(
                f"the plan asks for the {d}-dim prefix, but this index's prefixes are rotated and it holds them only "
                f"at {structures} dims (and the full dim, {dim}): use those dims"
            )
    if stages[-1][0] != dim:
        raise InputError(
            f"the plan ends at {stages[-1][0]} dims, but this index's prefixes are rotated: its last stage must "
            f"re-rank at the full dim ({dim})"
        )


@functools.lru_cache(maxsize=256)  # a search that names no plan parses the index's default text each time
def parse_plan(text: str) -> Plan:
    """``full``, ``adaptive:DS:K:DR`` or ``funnel:D1xK1,D2xK2,...``.

    Example::

        from matryoshka import AdaptivePlan, parse_plan

        assert parse_plan("adaptive:16:200:512") == AdaptivePlan(16, 200, 512)
        print(parse_plan("funnel:16x200,64x50,512x10"))
    """
    kind, _, rest = text.strip().partition(":")
    try:
        if kind == "full" and not rest:
            return FullPlan()
        if kind == "adaptive":
            ds, kk, dr = (int(x) for x in rest.split(":"))
            return AdaptivePlan(ds, kk, dr)
        if kind == "funnel":
            return FunnelPlan([tuple(int(x) for x in step.split("x")) for step in rest.split(",")])
    except ValueError:
        pass
    raise InputError(f"cannot parse plan {text!r}; use full, adaptive:16:200:512 or funnel:16x200,64x50,512x10")


def plan_to_text(plan: Plan) -> str:
    """The inverse of :func:`parse_plan`."""
    if isinstance(plan, AdaptivePlan):
        return f"adaptive:{plan.shortlist_dim}:{plan.shortlist_k}:{plan.rerank_dim}"
    if isinstance(plan, FunnelPlan):
        return "funnel:" + ",".join(f"{d}x{k}" for d, k in plan.steps)
    return "full"
