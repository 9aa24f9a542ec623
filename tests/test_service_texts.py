"""The service and `mrl index add` with a text run: refused texts, the served prefix, adding documents by text.

The run (the ``text_run`` fixture of conftest.py) is all-MiniLM-L6-v2 (384 dims) in a run folder of its own, reading
64 tokens, with a results.json that records the nesting [48, 96, 192, 384] (as a Matryoshka text run does).
"""

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from matryoshka.cli import app as cli
from matryoshka.errors import InputError
from matryoshka.index import IndexStore, MatryoshkaIndex
from matryoshka.runs import TrainedRun
from matryoshka.service import create_app

KEY = "test-key"
DOCS = [
    "a small dog barks at the postman",
    "the stock market fell sharply on monday",
    "a recipe for bread with yeast and flour",
    "the football team won the league",
    "how to repair a flat bicycle tyre",
    "rain is expected over the weekend",
    "a new phone with a larger screen",
    "the orchestra played a symphony by brahms",
]


@pytest.fixture(scope="module")
def doc_embeddings(text_run):
    return TrainedRun.load(text_run).encode_texts(DOCS)  # (8, 384), unit length


def _index(folder, vectors):
    index = MatryoshkaIndex(vectors.shape[1], [16])
    index.add(np.ascontiguousarray(vectors))
    index.save(folder)
    return folder


@pytest.fixture
def client(tmp_path, text_run, doc_embeddings):
    # A 96-dim index of the run's 384-dim embeddings: 96 is one of its trained dims, so no --model-prefix.
    app = create_app(_index(tmp_path / "ix", doc_embeddings[:, :96]), api_key=KEY, model_path=text_run)
    yield TestClient(app)
    app.state.store.close()


def test_embed_and_search_serve_the_indexs_prefix(client, text_run, doc_embeddings):
    served = client.post("/embed", json={"texts": DOCS[:2]})
    assert served.status_code == 200, served.text
    z = np.array(served.json()["embeddings"])
    assert served.json()["dim"] == 96 and z.shape == (2, 96)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    cut = doc_embeddings[:2, :96] / np.linalg.norm(doc_embeddings[:2, :96], axis=1, keepdims=True)
    np.testing.assert_allclose(z, cut, atol=1e-5)
    full = client.post("/embed", json={"texts": DOCS[:1], "dim": 384}).json()  # an explicit dim still wins
    assert full["dim"] == 384 and len(full["embeddings"][0]) == 384
    assert "dim must be in [1, 384]" in client.post("/embed", json={"texts": DOCS[:1], "dim": 385}).text
    # What /embed returns is what /search takes: the 96-d index accepts it.
    found = client.post("/search", json={"vectors": z.tolist(), "k": 1}).json()["ids"]
    assert found == [[0], [1]]
    assert client.post("/search", json={"texts": DOCS[2:4], "k": 1}).json()["ids"] == [[2], [3]]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
@pytest.mark.parametrize("route", ["/embed", "/search", "/vectors"])
def test_empty_and_blank_texts_are_refused(client, route, text):
    res = client.post(route, json={"texts": ["a dog", text]}, headers={"X-API-Key": KEY})
    assert res.status_code == 422 and "texts[1] is empty or blank" in res.json()["detail"], res.text


@pytest.mark.parametrize("route", ["/embed", "/search", "/vectors"])
def test_a_text_over_the_cap_is_refused_before_the_tokenizer_runs(client, route, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the tokenizer ran")

    monkeypatch.setattr(TrainedRun, "encode_texts", never)
    start = time.perf_counter()
    res = client.post(route, json={"texts": ["word " * 3_000_000]}, headers={"X-API-Key": KEY})  # 15 MB
    assert res.status_code == 413, res.text[:300]
    assert "at most 2,048 (the model reads 64 tokens" in res.json()["detail"]
    assert time.perf_counter() - start < 15  # the body is parsed, nothing more (21 s of CPU before)
    monkeypatch.undo()
    assert client.post(route, json={"texts": ["x" * 2048]}, headers={"X-API-Key": KEY}).status_code != 413


def test_images_to_a_text_model_say_it_is_one(client):
    res = client.post("/embed", json={"images": ["aGVsbG8="]})
    assert res.status_code == 422 and "is a text model; send texts" in res.json()["detail"]
    assert "preprocessing" not in res.text


def test_texts_are_added_in_one_write_kept_and_survive_reopening(client, tmp_path):
    headers = {"X-API-Key": KEY}
    new = ["a cat sleeps on the sofa", "interest rates rise again"]
    added = client.post("/vectors", json={"texts": new, "ids": [100, 101]}, headers=headers)
    assert added.status_code == 200 and added.json() == {"ids": [100, 101], "ntotal": 10}, added.text
    found = client.post("/search", json={"texts": new, "k": 1, "return_text": True}).json()
    assert found["ids"] == [[100], [101]] and found["texts"] == [[new[0]], [new[1]]]  # embedded, and kept
    mismatch = client.post("/vectors", json={"texts": new, "vectors": [[0.1] * 96]}, headers=headers)
    assert mismatch.status_code == 422 and "got 2 texts for 1 vectors" in mismatch.text
    neither = client.post("/vectors", json={"ids": [102]}, headers=headers)
    assert neither.status_code == 422 and "give 'vectors' (and 'texts' to keep beside them)" in neither.text
    client.app.state.store.close()
    with IndexStore.open(tmp_path / "ix", writable=False) as store:
        assert store.info()["segment_rows"] == 2 and store.texts([101, 100]) == new[::-1]  # one record in the log


def test_a_model_less_server_names_the_flag_for_texts(tmp_path, doc_embeddings):
    app = create_app(_index(tmp_path / "ix", doc_embeddings[:, :96]), api_key=KEY)
    try:
        res = TestClient(app).post("/vectors", json={"texts": ["a dog"]}, headers={"X-API-Key": KEY})
        assert res.status_code == 422 and "start it with --model RUN" in res.json()["detail"]
    finally:
        app.state.store.close()


def test_a_prefix_the_run_was_not_trained_for_needs_model_prefix(tmp_path, text_run, doc_embeddings):
    folder = _index(tmp_path / "ix", doc_embeddings[:, :100])
    with pytest.raises(InputError, match=r"gives 384 dims but the index .* holds 100; 100 is not one of .* --model-"):
        create_app(folder, model_path=text_run)
    app = create_app(folder, model_path=text_run, model_prefix=True)
    try:
        assert TestClient(app).post("/embed", json={"texts": ["a dog"]}).json()["dim"] == 100
    finally:
        app.state.store.close()


def test_mrl_index_add_texts(tmp_path, text_run, doc_embeddings):
    folder = str(_index(tmp_path / "ix", doc_embeddings[:, :96]))
    (tmp_path / "new.txt").write_text("a cat sleeps on the sofa\ninterest rates rise again\n")
    (tmp_path / "ids.txt").write_text("100\n101\n")
    add = ["index", "add", "--index", folder, "--texts", str(tmp_path / "new.txt")]
    done = CliRunner().invoke(cli, [*add, "--model", str(text_run), "--ids", str(tmp_path / "ids.txt")])
    assert done.exit_code == 0 and "added 2 vectors with their texts; 10 in" in done.output, done.output
    with IndexStore.open(folder, writable=False) as store:
        query = TrainedRun.load(text_run).encode_texts(["interest rates rise again"], 96)
        assert store.search(query, 1)[1].tolist() == [[101]]
        assert store.texts([101, 0]) == ["interest rates rise again", None]  # kept; the built rows have none
    no_model = CliRunner().invoke(cli, add)
    assert no_model.exit_code == 2 and "--texts needs --model RUN" in no_model.output
    (tmp_path / "blank.txt").write_text("a cat\n\nanother\n")
    blank = CliRunner().invoke(cli, [*add[:-1], str(tmp_path / "blank.txt"), "--model", str(text_run)])
    assert blank.exit_code == 2 and "blank.txt: line 2 is empty or blank" in blank.output, blank.output
    with IndexStore.open(folder, writable=False) as store:
        assert store.ntotal == 10  # the refused file added nothing
