import numpy as np
import pytest
from qdrant_client import QdrantClient

from matryoshka.index import AdaptivePlan, FullPlan, FunnelPlan, MatryoshkaIndex
from matryoshka.index.qdrant import export_index, search


@pytest.fixture(scope="module")
def exported():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((600, 64)) * np.linspace(3, 0.1, 64)).astype(np.float32)
    index = MatryoshkaIndex(64, [8])
    index.add(x, ids=np.arange(1000, 1600))
    client = QdrantClient(":memory:")
    export_index(index, client, "docs", dims=[8, 16, 32, 64])
    return index, client, (rng.standard_normal((8, 64)) * np.linspace(3, 0.1, 64)).astype(np.float32)


@pytest.mark.parametrize(
    "plan", [FullPlan(), AdaptivePlan(8, 60, 64), FunnelPlan([(8, 120), (16, 60), (32, 30), (64, 10)])]
)
def test_qdrant_prefetch_plans_match_the_library(exported, plan):
    index, client, queries = exported
    scores, ids = search(client, "docs", queries, 10, plan)
    ref_scores, ref_ids = index.search(queries, 10, plan)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4)


def test_qdrant_export_rejects_bad_dims(exported):
    index, client, _ = exported
    with pytest.raises(ValueError, match="prefix size"):
        export_index(index, client, "other", dims=[128])


def test_an_autotuned_plan_maps_to_prefetch_stages(exported):
    from matryoshka.index.autotune import autotune

    index, client, queries = exported
    tuned = autotune(index, queries, k=10, target_recall=0.9, structures="keep")
    _, ids = search(client, "docs", queries, 10, tuned.plan)
    np.testing.assert_array_equal(ids, index.search(queries, 10, tuned.plan)[1])
