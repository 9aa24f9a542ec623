"""Rotated prefixes: an index whose shortlist structures hold the first coordinates of each row in a basis fitted on
the corpus (matryoshka.index.basis)."""

import numpy as np
import pytest
from typer.testing import CliRunner

from matryoshka.cli import app
from matryoshka.evaluate.ranking import recall_against
from matryoshka.index import CorruptIndexError, IndexInputError, IndexStore, MatryoshkaIndex
from matryoshka.index.autotune import autotune, build_tuned, structure_of
from matryoshka.index.basis import check_basis, check_rotation, fit_basis
from matryoshka.index.threads import search_threads


def _hidden_spectrum(n=4000, d=32, seed=0):
    """Vectors whose energy sits in a few directions that are not the first dims (a random rotation of a decaying
    spectrum): raw prefixes keep little of the neighbours, the fitted basis finds them."""
    rng = np.random.default_rng(seed)
    mixing, _ = np.linalg.qr(np.random.default_rng(99).standard_normal((d, d)))
    return ((rng.standard_normal((n, d)) * np.geomspace(3, 0.05, d)) @ mixing.T).astype(np.float32)


def _queries(x, n=100, seed=1):
    rng = np.random.default_rng(seed)
    return (x[:n] + 0.05 * rng.standard_normal((n, x.shape[1]))).astype(np.float32)


def test_fit_basis_is_orthogonal_and_puts_energy_first():
    x = _hidden_spectrum()
    basis = fit_basis(x)
    np.testing.assert_allclose(basis.T @ basis, np.eye(32), atol=1e-5)
    energy = ((x @ basis) ** 2).mean(axis=0)
    assert (np.diff(energy) <= 1e-6).all()  # largest first
    assert energy[:4].sum() > 5 * (x[:, :4] ** 2).mean(axis=0).sum()


def test_rotated_index_keeps_full_dim_scores_and_shortens_the_shortlist():
    x = _hidden_spectrum()
    q = _queries(x)
    raw = MatryoshkaIndex(32, shortlist_dims=[8])
    raw.add(x)
    rotated = raw.with_basis(fit_basis(x))
    assert rotated.rotated and not raw.rotated
    np.testing.assert_array_equal(rotated.search(q, 10, "full")[1], raw.search(q, 10, "full")[1])
    _, truth = raw.search(q, 10, "full")
    s_rot, i_rot = rotated.search(q, 10, "adaptive:8:40:32")
    # The re-rank reads the stored rows at the full dim: scores are exact cosines of whatever was found.
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_allclose(s_rot, np.einsum("qd,qkd->qk", qn, xn[i_rot]), atol=1e-5)
    recall_raw = recall_against(raw.search(q, 10, "adaptive:8:40:32")[1], truth)
    recall_rot = recall_against(i_rot, truth)
    assert recall_rot > recall_raw + 0.2
    assert recall_rot > 0.9


def test_rotated_plans_use_only_the_prefixes_the_index_holds():
    x = _hidden_spectrum(1000)
    index = MatryoshkaIndex(32, shortlist_dims=[8, 16]).with_basis(fit_basis(x))
    index.add(x)
    index.search(x[:2], 5, "funnel:8x100,16x50,32x5")  # rotated 8 and 16 dims, then the full dim
    with pytest.raises(IndexInputError, match="asks for the 12-dim prefix.*rotated.*\\[8, 16\\]"):
        index.search(x[:2], 5, "funnel:8x100,12x50,32x5")
    with pytest.raises(IndexInputError, match="must re-rank at the full dim"):
        index.search(x[:2], 5, "adaptive:8:100:16")
    with pytest.raises(IndexInputError, match="asks for the 4-dim prefix"):
        index.search(x[:2], 5, "adaptive:4:100:32", exact=True)


def test_a_basis_of_the_wrong_dim_or_not_orthogonal_is_refused():
    index = MatryoshkaIndex(32, shortlist_dims=[8])
    with pytest.raises(IndexInputError, match=r"shape \(16, 16\); an index of 32-d vectors needs \(32, 32\)"):
        index.with_basis(np.eye(16))
    with pytest.raises(IndexInputError, match="not orthogonal"):
        check_basis(np.eye(32) * 2, 32)
    with pytest.raises(IndexInputError, match="unknown rotation 'pca'; choose one of auto, raw, svd"):
        check_rotation("pca")


def test_rotated_index_saves_with_its_basis_and_refuses_a_damaged_one(tmp_path):
    x = _hidden_spectrum(1000)
    index = MatryoshkaIndex(32, shortlist_dims=[8]).with_basis(fit_basis(x))
    index.add(x)
    folder = index.save(tmp_path / "rot")
    back = MatryoshkaIndex.load(tmp_path / "rot")
    assert back.rotated
    np.testing.assert_array_equal(back.basis, index.basis)
    np.testing.assert_array_equal(
        back.search(x[:5], 5, "adaptive:8:50:32")[1], index.search(x[:5], 5, "adaptive:8:50:32")[1]
    )

    basis_file = folder / "basis.npy"
    original = basis_file.read_bytes()
    changed = bytearray(original)
    changed[-1] ^= 1
    basis_file.write_bytes(bytes(changed))
    with pytest.raises(CorruptIndexError, match="basis.npy does not match its checksum"):
        MatryoshkaIndex.load(tmp_path / "rot")
    basis_file.write_bytes(original[: len(original) // 2])
    with pytest.raises(CorruptIndexError, match="basis"):
        MatryoshkaIndex.load(tmp_path / "rot", verify=False)
    np.save(basis_file, np.eye(32, dtype=np.float32) * 3)  # readable, but no rotation
    with pytest.raises(CorruptIndexError, match="basis.npy: the basis is not orthogonal"):
        MatryoshkaIndex.load(tmp_path / "rot", verify=False)


def test_a_store_projects_added_rows_and_compaction_keeps_the_basis(tmp_path):
    x = _hidden_spectrum(3000)
    index = MatryoshkaIndex(32, shortlist_dims=[8]).with_basis(fit_basis(x[:2000]))
    index.add(x[:2000])
    index.default_plan = "adaptive:8:60:32"
    index.save(tmp_path / "store")
    with IndexStore.open(tmp_path / "store", compact_threshold=0) as store:
        store.add(x[2000:], ids=np.arange(2000, 3000))
        _, ids = store.search(x[2000:2010], 1)  # the segment's rows, found under the rotated plan
        np.testing.assert_array_equal(ids[:, 0], np.arange(2000, 2010))
        store.delete([0, 1])
        store.compact()
        assert store.index.rotated
        np.testing.assert_array_equal(store.index.basis, index.basis)
        # The added rows now sit in the main index, in its rotated shortlist structure.
        _, ids = store.index.search(x[2500:2510], 1)
        np.testing.assert_array_equal(ids[:, 0], np.arange(2500, 2510))
    reopened = MatryoshkaIndex.load(tmp_path / "store")
    assert reopened.rotated and reopened.ntotal == 2998


def test_results_are_the_same_with_one_and_several_threads():
    x = _hidden_spectrum(5000)
    q = _queries(x, 300)
    index = MatryoshkaIndex(32, shortlist_dims=[8], shortlist="hnsw").with_basis(fit_basis(x))
    index.add(x)
    with search_threads(1):
        one = index.search(q, 10, "adaptive:8:80:32")
    several = index.search(q, 10, "adaptive:8:80:32")  # a batch: FAISS's threads
    np.testing.assert_array_equal(one[1], several[1])
    np.testing.assert_allclose(one[0], several[0], atol=1e-6)


def test_autotune_tunes_raw_and_rotated_prefixes_and_keeps_the_winner():
    x = _hidden_spectrum(20_000, d=128, seed=3)  # wide enough that the exact scan is not the only fast plan
    q = _queries(x, 200, seed=4)
    index = MatryoshkaIndex(128, shortlist_dims=[16])
    index.add(x)
    tuned = autotune(index, q, 10, 0.95, structures="keep")  # rotate="auto": raw and rotated both tuned

    def reaching(basis):
        return [c for c in tuned.candidates if c["structure"]["basis"] == basis and c["recall"] >= 0.95]

    # Which plan is fastest is a timing on a shared machine; what the rotation buys is not: the rotated prefixes
    # reach the target with a shortlist, the raw ones (at any K tried) only through the exact scan.
    assert any(c["plan"].__class__.__name__ == "AdaptivePlan" for c in reaching("svd"))
    assert all(c["plan"].__class__.__name__ == "FullPlan" for c in reaching("raw"))
    assert index.rotated == (tuned.structure["basis"] == "svd") == (structure_of(index)["basis"] == "svd")
    _, truth = index.search(q, 10, "full")
    assert recall_against(index.search(q, 10)[1], truth) >= 0.95


def test_autotune_rotate_raw_and_svd():
    x = _hidden_spectrum(3000)
    index, tuned = build_tuned(x, target_recall=0.9, rotate="svd", shortlist_dims=[8])
    assert index.rotated and tuned.structure["basis"] == "svd"
    assert index.ntotal == 3000  # the held-out calibration rows were added back through the basis
    _, ids = index.search(x[:20], 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(20))
    raw, tuned = build_tuned(x, target_recall=0.9, rotate="raw", shortlist_dims=[8])
    assert not raw.rotated and tuned.structure["basis"] == "raw"
    with pytest.raises(IndexInputError, match="unknown rotation"):
        build_tuned(x, rotate="yes")


def test_cli_build_rotate(tmp_path):
    x = _hidden_spectrum(2000)
    np.save(tmp_path / "x.npy", x)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "index",
            "build",
            "--embeddings",
            str(tmp_path / "x.npy"),
            "--out",
            str(tmp_path / "i"),
            "--shortlist-dims",
            "8",
            "--shortlist",
            "flat",
            "--rotate",
            "svd",
        ],
    )
    assert result.exit_code == 0, result.output
    assert MatryoshkaIndex.load(tmp_path / "i").rotated
    result = runner.invoke(
        app,
        ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "j"), "--rotate", "pca"],
    )
    assert result.exit_code != 0
    assert "unknown rotation 'pca'; choose one of auto, raw, svd" in result.output
