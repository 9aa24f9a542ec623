import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from matryoshka.bench.store import free_port, start_server
from matryoshka.index import AdaptivePlan, MatryoshkaIndex
from matryoshka.service import create_app

KEY = "test-key"
DIM = 32


def _corpus(n=800, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, DIM)) * np.linspace(2, 0.1, DIM)).astype(np.float32)


@pytest.fixture
def index_dir(tmp_path):
    index = MatryoshkaIndex(DIM, [8])
    index.add(_corpus())
    index.save(tmp_path / "ix")
    return tmp_path / "ix"


@pytest.fixture
def client(index_dir):
    return TestClient(create_app(index_dir, api_key=KEY, max_body_bytes=200_000, max_queries=64))


def test_search_matches_library(client, index_dir):
    q = _corpus(5, seed=1)
    body = {"vectors": q.tolist(), "k": 5, "plan": "adaptive:8:50:32"}
    res = client.post("/search", json=body)
    assert res.status_code == 200, res.text
    _, ids = MatryoshkaIndex.load(index_dir).search(q, 5, AdaptivePlan(8, 50, 32))
    assert res.json()["ids"] == ids.tolist()
    assert client.get("/health").json()["ntotal"] == 800


def test_a_search_without_a_plan_follows_the_tuned_one(tmp_path):
    index = MatryoshkaIndex(DIM, [2], default_plan="adaptive:2:10:32")  # a shallow plan: far from exact
    index.add(_corpus())
    index.save(tmp_path / "ix")
    client = TestClient(create_app(tmp_path / "ix", api_key=KEY))
    q = _corpus(20, seed=1)
    tuned = client.post("/search", json={"vectors": q.tolist(), "k": 5}).json()["ids"]
    assert tuned == index.search(q, 5, "adaptive:2:10:32")[1].tolist()
    assert tuned != index.search(q, 5, "full")[1].tolist()  # so it really was not an exact search
    full = client.post("/search", json={"vectors": q.tolist(), "k": 5, "plan": "full"}).json()["ids"]
    assert full == index.search(q, 5, "full")[1].tolist()


def test_writes_need_the_key_and_persist(client, index_dir):
    v = _corpus(1, seed=2).tolist()
    assert client.post("/vectors", json={"vectors": v, "ids": [5000]}).status_code == 401
    bad = client.post("/vectors", json={"vectors": v, "ids": [5000]}, headers={"X-API-Key": "nope"})
    assert bad.status_code == 401
    ok = client.post("/vectors", json={"vectors": v, "ids": [5000]}, headers={"X-API-Key": KEY})
    assert ok.status_code == 200 and ok.json()["ids"] == [5000]
    assert MatryoshkaIndex.load(index_dir).ntotal == 801  # saved before the response
    dup = client.post("/vectors", json={"vectors": v, "ids": [5000]}, headers={"X-API-Key": KEY})
    assert dup.status_code == 409
    assert client.delete("/vectors/5000", headers={"X-API-Key": KEY}).status_code == 200
    assert client.delete("/vectors/5000", headers={"X-API-Key": KEY}).status_code == 404
    assert MatryoshkaIndex.load(index_dir).ntotal == 800


def test_without_configured_key_writes_are_refused(index_dir, monkeypatch):
    monkeypatch.delenv("MRL_API_KEY", raising=False)
    client = TestClient(create_app(index_dir))
    res = client.post("/vectors", json={"vectors": _corpus(1).tolist()}, headers={"X-API-Key": "x"})
    assert res.status_code == 403 and "MRL_API_KEY" in res.text


@pytest.mark.parametrize(
    "body,status,text",
    [
        ({"vectors": [[0.0] * 31], "k": 3}, 422, "32 numbers"),
        ({"vectors": [], "k": 3}, 422, "must not be empty"),
        ({"vectors": [[0.1] * DIM], "k": 0}, 422, "greater than or equal to 1"),
        ({"vectors": [[0.1] * DIM], "k": 100000}, 422, "at most 1000"),
        ({"vectors": [[0.1] * DIM], "plan": "adaptive:8"}, 422, "cannot parse plan"),
        ({"vectors": [[0.1] * DIM], "plan": "adaptive:64:50:32"}, 422, "must be in"),
        ({"vectors": [[0.1] * DIM] * 65}, 413, "at most 64"),
        ({"inputs": [[0.1] * 4]}, 422, "no model"),
        ({"vectors": [[0.1] * DIM], "inputs": [[0.1]]}, 422, "exactly one"),
        ({"vectors": [[0.1] * DIM], "extra": 1}, 422, "extra"),
    ],
)
def test_bad_search_requests(client, body, status, text):
    res = client.post("/search", json=body)
    assert res.status_code == status, res.text
    assert text in res.text


def test_nan_malformed_and_oversize_bodies(client):
    nan_body = '{"vectors": [[NaN' + ", 0.1" * (DIM - 1) + "]]}"
    res = client.post("/search", content=nan_body, headers={"content-type": "application/json"})
    assert res.status_code == 422 and "finite" in res.text
    res = client.post("/search", content="{not json", headers={"content-type": "application/json"})
    assert res.status_code == 422
    res = client.post("/search", json={"vectors": [[0.1] * DIM] * 2000})
    assert res.status_code == 413


def _start_server(index_dir, port):
    return start_server(index_dir, port, api_key=KEY, timeout=60)


def test_real_server_concurrent_clients_and_kill_9(index_dir):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(index_dir, port)
    try:
        queries = _corpus(50, seed=3)
        library = MatryoshkaIndex.load(index_dir)
        _, expected = library.search(queries, 10, AdaptivePlan(8, 100, DIM))

        def search(i):
            r = httpx.post(
                f"{url}/search",
                json={"vectors": [queries[i].tolist()], "k": 10, "plan": "adaptive:8:100:32"},
                timeout=30,
            )
            return r.status_code, r.json()["ids"][0] if r.status_code == 200 else r.text

        def add(i):
            vec = _corpus(1, seed=100 + i)[0].tolist()
            r = httpx.post(
                f"{url}/vectors", json={"vectors": [vec], "ids": [10_000 + i]}, headers={"X-API-Key": KEY}, timeout=30
            )
            return r.status_code

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(search, range(50)))
            assert [s for s, _ in results] == [200] * 50
            assert [ids for _, ids in results] == expected.tolist()
            assert list(pool.map(add, range(50))) == [200] * 50
        proc.send_signal(signal.SIGKILL)  # acknowledged writes must survive
        proc.wait()
        proc = _start_server(index_dir, port)
        assert httpx.get(f"{url}/health").json()["ntotal"] == 850
        for i in (0, 17, 49):
            vec = _corpus(1, seed=100 + i)[0].tolist()
            top = httpx.post(f"{url}/search", json={"vectors": [vec], "k": 1}).json()["ids"][0][0]
            assert top == 10_000 + i
    finally:
        proc.kill()
        proc.wait()


def test_out_of_range_ids_are_4xx_not_500(client):
    v = _corpus(1, seed=3).tolist()
    headers = {"X-API-Key": KEY}
    for bad in (-1, 2**63, 2**70):
        res = client.post("/vectors", json={"vectors": v, "ids": [bad]}, headers=headers)
        assert res.status_code == 422, (bad, res.text)
        assert client.delete(f"/vectors/{bad}", headers=headers).status_code == 422
    zero = client.post("/vectors", json={"vectors": [[0.0] * DIM]}, headers=headers)
    assert zero.status_code == 422 and "all zeros" in zero.text
    assert client.post("/search", json={"vectors": [[0.0] * DIM]}).status_code == 422
    bad_plan = client.post("/search", json={"vectors": v, "k": 10, "plan": "adaptive:8:0:32"})
    assert bad_plan.status_code == 422 and "K must be > 0" in bad_plan.text


def test_string_ids_batch_delete_and_exact_plans(tmp_path):
    names = [f"docs/{i}.md" for i in range(300)]
    MatryoshkaIndex.build(_corpus(300), names, shortlist_dims=[8]).save(tmp_path / "ix")
    client = TestClient(create_app(tmp_path / "ix", api_key=KEY))
    headers = {"X-API-Key": KEY}
    v = _corpus(2, seed=7).tolist()
    res = client.post(
        "/vectors", json={"vectors": v, "ids": ["https://x.org/a?b=1", "550e8400-e29b-41d4"]}, headers=headers
    )
    assert res.status_code == 200 and res.json()["ids"] == ["https://x.org/a?b=1", "550e8400-e29b-41d4"]
    found = client.post("/search", json={"vectors": v, "k": 1, "plan": "adaptive:8:50:32"}).json()["ids"]
    assert found == [["https://x.org/a?b=1"], ["550e8400-e29b-41d4"]]
    assert client.post("/vectors", json={"vectors": v[:1], "ids": [5]}, headers=headers).status_code == 422
    assert client.post("/vectors", json={"vectors": v[:1], "ids": ["x" * 600]}, headers=headers).status_code == 422
    assert client.delete("/vectors/docs/3.md", headers=headers).json()["deleted"] == "docs/3.md"
    batch = client.post("/vectors/delete", json={"ids": ["docs/4.md", "550e8400-e29b-41d4"]}, headers=headers)
    assert batch.status_code == 200 and batch.json() == {"deleted": 2, "ntotal": 299}
    missing = client.post("/vectors/delete", json={"ids": ["docs/5.md", "nope"]}, headers=headers)
    assert missing.status_code == 404 and "nope" in missing.text
    assert client.get("/health").json()["ntotal"] == 299  # all or none: docs/5.md stays
    no_structure = client.post("/search", json={"vectors": v, "k": 3, "plan": "adaptive:16:50:32"})
    assert no_structure.status_code == 422 and "shortlist structures only for [8]" in no_structure.text
    exact = client.post("/search", json={"vectors": v, "k": 3, "plan": "adaptive:16:50:32", "exact": True})
    assert exact.status_code == 200
    health = client.get("/health").json()
    assert health["segment_rows"] == 2 and health["id_kind"] == "str" and health["writable"]


def test_ids_are_strict(client):
    headers = {"X-API-Key": KEY}
    v = _corpus(1, seed=21).tolist()
    for bad in (True, 5.0, "5", None):
        assert client.post("/vectors", json={"vectors": v, "ids": [bad]}, headers=headers).status_code == 422, bad
    assert client.post("/vectors", json={"vectors": v, "ids": [5001]}, headers=headers).status_code == 200
    minus_one = client.post("/vectors", json={"vectors": v, "ids": [-1]}, headers=headers)
    assert minus_one.status_code == 422 and "'no result' marker" in minus_one.text
    assert "valid string" not in minus_one.text  # one message, not one per type of id
    long = client.post("/vectors", json={"vectors": v, "ids": ["é" * 300]}, headers=headers)  # 600 bytes
    assert long.status_code == 422 and "512 bytes" in long.text


def test_a_router_mounts_alone_and_error_types_choose_the_status(index_dir):
    from fastapi import FastAPI

    from matryoshka.index import IndexStore
    from matryoshka.service.errors import install_error_handlers, status_of
    from matryoshka.service.routes import Service, vectors_router

    store = IndexStore.open(index_dir, writable=True)
    try:
        app = FastAPI()
        install_error_handlers(app)
        app.include_router(vectors_router(Service(store, key=KEY)))
        client = TestClient(app)
        headers = {"X-API-Key": KEY}
        added = client.post("/vectors", json={"vectors": _corpus(1).tolist(), "ids": [5000]}, headers=headers)
        assert added.status_code == 200, added.text
        again = client.post("/vectors", json={"vectors": _corpus(1).tolist(), "ids": [5000]}, headers=headers)
        assert again.status_code == 409 and "already" in again.json()["detail"]
        missing = client.delete("/vectors/123456", headers=headers)
        assert missing.status_code == 404 and "not in the index" in missing.json()["detail"]
        assert client.post("/search", json={"vectors": []}).status_code == 404  # not mounted here
    finally:
        store.close()
    from matryoshka.errors import InputError, MatryoshkaError
    from matryoshka.index import DuplicateIdError, IndexInputError, UnknownIdError

    # The status follows the type, never the message: an input error that happens to say "already" stays a 422.
    assert status_of(IndexInputError("ids already seen")) == 422 and status_of(DuplicateIdError("x")) == 409
    assert status_of(UnknownIdError("x")) == 404 and status_of(InputError("x")) == 422
    assert status_of(MatryoshkaError("x")) == 422
