"""Texts kept beside ids: through build, adds, deletes, compaction, reopening and a kill -9; folders without texts;
`mrl index build/add --texts`; `return_text` over HTTP."""

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from kill_helpers import kill_after_acks
from typer.testing import CliRunner

from matryoshka.cli import app as cli
from matryoshka.index import CorruptIndexError, IndexInputError, IndexStore, MatryoshkaIndex, UnknownIdError, versions
from matryoshka.service import create_app

DIM = 16
KEY = "test-key"


def _vectors(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _text(i):
    return f"document {i}: ünïcode, a line break\nand a tab\t"


@pytest.fixture
def folder(tmp_path):
    MatryoshkaIndex.build(_vectors(500), texts=[_text(i) for i in range(500)], shortlist_dims=[4]).save(tmp_path / "ix")
    return tmp_path / "ix"


def _check(store, expected: dict):
    """The store keeps exactly ``expected`` (id -> text or None), by id and in every hit of a search."""
    assert sorted(store.ids.tolist()) == sorted(expected)
    some = sorted(expected)[::7]
    assert store.texts(some) == [expected[i] for i in some]
    _, ids, texts = store.search(_vectors(20, seed=99), 10, return_texts=True)
    assert texts.tolist() == [[expected[i] for i in row] for row in ids.tolist()]


def test_texts_are_kept_through_adds_deletes_compaction_and_reopening(folder):
    expected = {i: _text(i) for i in range(500)}
    with IndexStore.open(folder) as store:
        assert store.keeps_texts and store.info()["keeps_texts"]
        store.add(_vectors(10, seed=1), texts=[_text(i) for i in range(500, 510)])
        store.add(_vectors(5, seed=2))  # no texts: None
        store.add(_vectors(3, seed=3), texts=["kept", None, ""])
        expected.update({i: _text(i) for i in range(500, 510)} | dict.fromkeys(range(510, 515)))
        expected.update({515: "kept", 516: None, 517: ""})
        store.delete([3, 505, 516])
        for i in (3, 505, 516):
            del expected[i]
        with pytest.raises(UnknownIdError, match=r"not in the index: \[3\]"):
            store.texts([4, 3])  # a deleted row's text is gone with it
        _check(store, expected)
    with IndexStore.open(folder) as store:  # the log alone carries the writes and their texts
        assert store.info()["segment_rows"] == 18
        _check(store, expected)
        store.compact()
        assert store.info()["segment_rows"] == 0
        _check(store, expected)
        store.add(_vectors(2, seed=4), texts=["after", "compaction"])  # the new version's log carries texts too
        expected.update({518: "after", 519: "compaction"})
    meta = json.loads((folder / versions.current_name(folder) / "meta.json").read_text())
    assert meta["format"] == 3 and {"text_bytes", "text_offsets", "text_kept"} <= set(meta["sha256"])
    with IndexStore.open(folder, writable=False) as reader:
        _check(reader, expected)
    loaded = MatryoshkaIndex.load(folder)  # folds the log in, texts and all
    assert loaded.texts([519, 517, 0]) == ["compaction", "", _text(0)]


def test_an_index_whose_texted_rows_are_all_deleted_keeps_none(tmp_path):
    MatryoshkaIndex.build(_vectors(50), shortlist_dims=[4]).save(tmp_path / "ix")
    with IndexStore.open(tmp_path / "ix") as store:
        assert not store.keeps_texts and store.texts([0]) == [None]
        store.add(_vectors(1, seed=5), [50], ["only one"])
        assert store.keeps_texts
        store.delete([50])
        store.compact()
        assert not store.keeps_texts and not store.index.keeps_texts
    meta = tmp_path / "ix" / versions.current_name(tmp_path / "ix") / "meta.json"
    assert json.loads(meta.read_text())["format"] == 2  # written as a release before texts reads it


def test_folders_without_texts_load_and_work_as_before(tmp_path):
    """A folder as the releases before texts wrote it: format 2, no text arrays, adds logged as op 1 records."""
    MatryoshkaIndex.build(_vectors(200), [f"d{i}" for i in range(200)], shortlist_dims=[4]).save(tmp_path / "ix")
    with IndexStore.open(tmp_path / "ix") as store:
        store.add(_vectors(2, seed=6), ["new-1", "new-2"])
    meta = json.loads((tmp_path / "ix" / "v-000001" / "meta.json").read_text())
    assert meta["format"] == 2 and not any(key.startswith("text") for key in meta["sha256"])
    assert versions.wal_path(tmp_path / "ix", "v-000001").read_bytes()[4] == 1  # a plain add record
    with IndexStore.open(tmp_path / "ix") as store:
        assert store.ntotal == 202 and not store.keeps_texts
        assert store.texts(["d7", "new-2"]) == [None, None]
        _, ids, texts = store.search(_vectors(3, seed=6), 4, return_texts=True)
        assert ids.shape == texts.shape == (3, 4) and set(texts.ravel().tolist()) == {None}
        store.add(_vectors(1, seed=7), ["captioned"], ["a caption"])  # an old folder takes texts from now on
        store.compact()
        assert store.texts(["captioned", "d7"]) == ["a caption", None]


def test_bad_texts_are_refused_and_leave_nothing_behind(folder):
    with IndexStore.open(folder) as store:
        size = store.info()["log_bytes"]
        for texts, match in [
            (["a"], "got 1 texts for 2 vectors"),
            (["a", 5], r"texts\[1\] must be a string or None, got int"),
            (["a", "\ud800"], r"texts\[1\] is not valid Unicode text"),
        ]:
            with pytest.raises(IndexInputError, match=match):
                store.add(_vectors(2, seed=8), texts=texts)
        assert store.ntotal == 500 and store.info()["log_bytes"] == size
        with pytest.raises(UnknownIdError, match="not in the index"):
            store.texts([12345])
    with pytest.raises(IndexInputError, match="got 3 texts for 2 vectors"):
        MatryoshkaIndex.build(_vectors(2), texts=["a", "b", "c"])
    with pytest.raises(UnknownIdError):
        MatryoshkaIndex.build(_vectors(2), texts=["a", "b"]).texts([2])


def test_a_torn_record_with_texts_is_cut_off_and_a_damaged_one_refused(folder):
    with IndexStore.open(folder) as store:
        store.add(_vectors(1, seed=9), [600], ["first"])
    log = versions.wal_path(folder, "v-000001")
    whole = log.read_bytes()
    with IndexStore.open(folder) as store:
        store.add(_vectors(1, seed=10), [601], ["second"])
    both = log.read_bytes()
    log.write_bytes(both[:-3])  # a crash in the middle of the last append
    with pytest.warns(UserWarning, match="torn last log record"), IndexStore.open(folder) as store:
        assert store.texts([600]) == ["first"] and 601 not in store
    assert log.read_bytes() == whole
    damaged = bytearray(both)
    damaged[whole.find(b"first")] ^= 0x01  # a flipped bit in the first record's text, a record after it
    log.write_bytes(bytes(damaged))
    with pytest.raises(CorruptIndexError, match="damaged and .* bytes of log follow it"):
        IndexStore.open(folder)


KILL_SCRIPT = """
import sys, numpy as np
from matryoshka.index import IndexStore
store = IndexStore.open(sys.argv[1], compact_threshold=int(sys.argv[2]))
rng = np.random.default_rng(0)
i = 0
while True:
    store.add(rng.standard_normal((1, 16)).astype(np.float32), [100_000 + i], [f"text {i}" if i % 3 else None])
    if i % 7 == 3:
        store.delete([i])
    print(i, flush=True)  # acknowledged
    i += 1
"""


@pytest.mark.parametrize("threshold", [0, 100])
def test_kill_9_mid_append_or_mid_compaction_keeps_every_acknowledged_text(tmp_path, threshold):
    texts = [_text(i) for i in range(20_000)]
    MatryoshkaIndex.build(_vectors(20_000), texts=texts, shortlist_dims=[4]).save(tmp_path / "ix")
    acked = kill_after_acks(KILL_SCRIPT, [str(tmp_path / "ix"), str(threshold)], enough=600)
    assert acked > 50
    with IndexStore.open(tmp_path / "ix") as store:
        added = [100_000 + i for i in range(acked + 1)]
        assert store.texts(added) == [f"text {i}" if i % 3 else None for i in range(acked + 1)]
        kept = [i for i in range(acked + 1) if i % 7 != 3]
        assert store.texts(kept) == [texts[i] for i in kept]
        assert all(i not in store for i in range(acked + 1) if i % 7 == 3)
        assert (int(store.version[2:]) > 1) == (threshold > 0)  # compactions ran (and one was likely cut short)


def _write(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("shortlist", ["flat", "auto"])
def test_mrl_index_build_texts_keeps_one_per_row_and_refuses_a_count_that_differs(tmp_path, shortlist):
    x = _vectors(300)
    np.save(tmp_path / "x.npy", x)
    texts = _write(tmp_path / "t.txt", [f"row {i} ünï" for i in range(300)])
    build = ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "ix")]
    done = CliRunner().invoke(cli, [*build, "--texts", texts, "--shortlist", shortlist, "--shortlist-dims", "4"])
    assert done.exit_code == 0 and "with their texts" in done.output, done.output
    with IndexStore.open(tmp_path / "ix", writable=False) as store:
        # autotune holds rows out while it tunes and adds them after: each text still sits beside its own row
        _, ids, found = store.search(x[:50], 1, "full", return_texts=True)
        assert ids[:, 0].tolist() == list(range(50)) and found[:, 0].tolist() == [f"row {i} ünï" for i in range(50)]
    short = _write(tmp_path / "short.txt", ["a"] * 299)
    refused = CliRunner().invoke(cli, [*build, "--force", "--texts", short])
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        f"error: --texts {short} has 299 lines but --embeddings {tmp_path / 'x.npy'} has 300 rows: give one text per "
        "row, in the same order"
    )
    blank = _write(tmp_path / "blank.txt", ["a", "  ", *["b"] * 298])
    refused = CliRunner().invoke(cli, [*build, "--force", "--texts", blank])
    assert refused.exit_code == 2 and "blank.txt: line 2 is empty or blank" in refused.output


def test_mrl_index_add_texts_beside_embeddings(tmp_path):
    MatryoshkaIndex.build(_vectors(100), shortlist_dims=[4]).save(tmp_path / "ix")
    np.save(tmp_path / "new.npy", _vectors(2, seed=11))
    add = ["index", "add", "--index", str(tmp_path / "ix"), "--embeddings", str(tmp_path / "new.npy")]
    done = CliRunner().invoke(cli, [*add, "--texts", _write(tmp_path / "new.txt", ["first new", "second new"])])
    assert done.exit_code == 0 and "added 2 vectors with their texts; 102 in" in done.output, done.output
    with IndexStore.open(tmp_path / "ix", writable=False) as store:
        assert store.texts([100, 101, 0]) == ["first new", "second new", None]
    three = CliRunner().invoke(cli, [*add, "--texts", _write(tmp_path / "three.txt", ["a", "b", "c"])])
    assert three.exit_code == 2 and "has 3 lines but --embeddings" in three.output
    model = CliRunner().invoke(cli, [*add, "--texts", str(tmp_path / "new.txt"), "--model", str(tmp_path)])
    assert model.exit_code == 2 and "with --embeddings, drop --model" in model.output
    with IndexStore.open(tmp_path / "ix", writable=False) as store:
        assert store.ntotal == 102  # the refused adds added nothing


def test_return_text_over_http(tmp_path):
    MatryoshkaIndex.build(_vectors(100), shortlist_dims=[4]).save(tmp_path / "ix")
    app = create_app(tmp_path / "ix", api_key=KEY)
    try:
        client = TestClient(app)
        new = _vectors(2, seed=12)
        body = {"vectors": new.tolist(), "ids": [500, 501], "texts": ["kept as it is", "not embedded"]}
        assert client.post("/vectors", json=body, headers={"X-API-Key": KEY}).status_code == 200
        plain = client.post("/search", json={"vectors": new.tolist(), "k": 2})
        assert "texts" not in plain.json() and plain.headers["Server-Timing"].startswith("search;dur=")
        found = client.post("/search", json={"vectors": new.tolist(), "k": 2, "return_text": True}).json()
        assert [row[0] for row in found["ids"]] == [500, 501]
        assert [row[0] for row in found["texts"]] == ["kept as it is", "not embedded"]
        assert found["texts"][0][1] is None  # a row added without a text: null
        page = client.get("/")  # the search page of a server without a model says why it cannot search
        assert page.status_code == 200 and "script-src 'sha256-" in page.headers["Content-Security-Policy"]
        assert '"query": null' in page.text and "this server has no model" in page.text
        assert '"keeps_texts": true' in page.text and '"dims": [4, 8, 16]' in page.text
    finally:
        app.state.store.close()
