import json

import numpy as np
import pytest
from typer.testing import CliRunner

from matryoshka.cli import app

runner = CliRunner()


def test_train_then_encode(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data: {name: digits}\nmodel: {embed_dim: 32, width: 8}\ntrain: {epochs: 1, batch_size: 64}\n")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "-c", str(config), "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "validation accuracy per dim: 8:" in result.output
    emb, labels = tmp_path / "z.npy", tmp_path / "y.npy"
    result = runner.invoke(
        app, ["encode", "--checkpoint", str(run), "--out", str(emb), "--dim", "16", "--labels", str(labels)]
    )
    assert result.exit_code == 0, result.output
    z = np.load(emb)
    assert z.shape == (360, 16) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    assert np.load(labels).shape == (360,)
    result = runner.invoke(app, ["encode", "--checkpoint", str(run), "--out", str(emb), "--dim", "64"])
    assert result.exit_code == 2 and "cannot truncate a 32-dim embedding" in result.output


def test_train_reports_bad_config_clearly(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {embed_dims: 32}\n")
    result = runner.invoke(app, ["train", "-c", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "model.embed_dims: unknown key (did you mean model.embed_dim?)" in " ".join(result.output.split())


def test_encode_missing_checkpoint(tmp_path):
    result = runner.invoke(app, ["encode", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "z.npy")])
    assert result.exit_code == 2 and "holds no trained model (no config.json" in result.output


def test_eval_on_npy_embeddings(tmp_path, digits):
    x_train, x_test = digits.train.x.flatten(1).numpy(), digits.test.x.flatten(1).numpy()
    paths = {}
    for name, arr in [("tz", x_train), ("ty", digits.train.y.numpy()), ("qz", x_test), ("qy", digits.test.y.numpy())]:
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    out = tmp_path / "eval.json"
    args = [
        "eval",
        "--train-embeddings",
        paths["tz"],
        "--train-labels",
        paths["ty"],
        "--test-embeddings",
        paths["qz"],
        "--test-labels",
        paths["qy"],
        "--dims",
        "16,64",
        "--out",
        out,
    ]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    import json

    res = json.loads(out.read_text())
    assert res["dims"] == [16, 64] and res["knn1"]["64"] > 0.9 and res["probe"]["64"] > 0.9
    assert 0 < res["retrieval"]["16"]["map@10"] <= 1
    bad = runner.invoke(app, [str(a) for a in args[:-4]] + ["--dims", "64,16"])
    assert bad.exit_code == 2 and "unsorted" in bad.output
    np.save(paths["qz"], x_test[:, :10])
    bad = runner.invoke(app, [str(a) for a in args[:-4]])
    assert bad.exit_code == 2 and "equal widths" in bad.output


def test_eval_needs_one_source(tmp_path):
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 2 and "either --checkpoint" in result.output


def test_cascade_command(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data: {name: digits}\nmodel: {embed_dim: 32, width: 8}\ntrain: {epochs: 3, batch_size: 64}\n")
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", "-c", str(config), "--out", str(run), "--no-progress"]).exit_code == 0
    saved = tmp_path / "cascade.json"
    result = runner.invoke(app, ["cascade", "--checkpoint", str(run), "--save", str(saved)])
    assert result.exit_code == 0, result.output
    assert "examples stopping at each dim: 8:" in result.output and saved.exists()
    result = runner.invoke(app, ["cascade", "--checkpoint", str(run), "--policy", "target_dim", "--target", "8"])
    assert result.exit_code == 0, result.output
    assert "8: 360, 16: 0, 32: 0" in result.output
    result = runner.invoke(app, ["cascade", "--checkpoint", str(run), "--policy", "target_dim"])
    assert result.exit_code == 2 and "needs a target" in result.output


def _build_index(tmp_path, n, d, queries, *options):
    """Save a coarse-to-fine corpus (n, d) and its first rows as queries, then run `mrl index build`."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, d)) * np.linspace(3, 0.1, d)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", x[:queries] + 0.01)
    args = ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "ix"), *options]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return x, result


def test_index_build_and_search(tmp_path):
    x, result = _build_index(tmp_path, 500, 32, 3, "--shortlist-dims", "8", "--encoding", "float16")
    assert "indexed 500 vectors of dim 32" in result.output
    out = tmp_path / "res.npz"
    result = runner.invoke(
        app,
        [
            "index",
            "search",
            "--index",
            str(tmp_path / "ix"),
            "--queries",
            str(tmp_path / "q.npy"),
            "--plan",
            "adaptive:8:50:32",
            "--k",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert np.load(out)["ids"][:, 0].tolist() == [0, 1, 2]
    assert result.output.splitlines() == [f"wrote 3 x 3 results to {out}"]  # with --out, no hits on the screen
    result = runner.invoke(
        app, ["search", "--index", str(tmp_path / "ix"), "--queries", str(tmp_path / "q.npy"), "--plan", "adaptive:8"]
    )
    assert result.exit_code == 2 and "cannot parse plan" in result.output
    np.save(tmp_path / "bad.npy", x[:2, :10])
    result = runner.invoke(app, ["search", "--index", str(tmp_path / "ix"), "--queries", str(tmp_path / "bad.npy")])
    assert result.exit_code == 2 and "shape (n, 32)" in result.output
    listed = [line.strip("│| ").split(" ")[0] for line in runner.invoke(app, ["--help"]).output.splitlines()]
    assert "index" in listed and "search" not in listed  # `mrl search` is a hidden alias of `mrl index search`


def test_index_tune_stores_its_plan_and_shares_builds_target(tmp_path):
    import inspect

    from matryoshka.cli import index as index_cli
    from matryoshka.index import MatryoshkaIndex, parse_plan

    targets = {
        inspect.signature(command).parameters["target_recall"].default for command in (index_cli.build, index_cli.tune)
    }
    assert targets == {0.95}
    _build_index(tmp_path, 2000, 64, 40, "--shortlist", "flat", "--shortlist-dims", "8,16")
    tune = ["index", "tune", "--index", str(tmp_path / "ix"), "--queries", str(tmp_path / "q.npy")]
    printed = runner.invoke(app, [*tune, "--no-save", "--target-recall", "0.9"])
    assert printed.exit_code == 0, printed.output
    parse_plan(printed.output.splitlines()[0].removeprefix("plan: "))
    assert MatryoshkaIndex.load(tmp_path / "ix").default_plan is None  # --no-save only prints
    result = runner.invoke(app, [*tune, "--target-recall", "0.9"])
    assert result.exit_code == 0, result.output
    plan = result.output.splitlines()[0].removeprefix("plan: ").removesuffix(" (saved as the index's default plan)")
    saved = MatryoshkaIndex.load(tmp_path / "ix")
    assert saved.default_plan == plan and saved.default_plan_k == 10
    search = ["index", "search", "--index", str(tmp_path / "ix"), "--queries", str(tmp_path / "q.npy")]
    runner.invoke(app, [*search, "--out", str(tmp_path / "default.npz")])
    runner.invoke(app, [*search, "--plan", plan, "--out", str(tmp_path / "named.npz")])
    np.testing.assert_array_equal(np.load(tmp_path / "default.npz")["ids"], np.load(tmp_path / "named.npz")["ids"])


def test_index_build_with_an_autotuned_structure(tmp_path, monkeypatch):
    import matryoshka.index.autotune as tune_module
    from matryoshka.index import IndexStore

    monkeypatch.setattr(tune_module, "STRUCTURE_MIN_ROWS", 1000)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", (rng.standard_normal((3000, 256)) * np.linspace(3, 0.1, 256)).astype(np.float32))
    np.save(tmp_path / "q.npy", (rng.standard_normal((40, 256)) * np.linspace(3, 0.1, 256)).astype(np.float32))
    build = ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "ix")]
    tune = ["--tune-queries", str(tmp_path / "q.npy"), "--target-recall", "0.9"]
    result = runner.invoke(app, [*build, "--shortlist", "flat", *tune])
    assert result.exit_code == 2 and "--tune-queries goes with --shortlist auto" in result.output
    result = runner.invoke(app, [*build, "--shortlist", "auto", *tune])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("structure: "))
    kind, dims = line.split(" over ")[0].removeprefix("structure: "), line.split("[")[1].split("]")[0]
    with IndexStore.open(tmp_path / "ix", writable=False) as store:  # the chosen structure is what was saved
        assert store.index.shortlist == kind and store.index.shortlist_dims == [int(dims)]
        assert store.index.default_plan == line.split("plan: ")[1]


def test_a_plain_index_build_is_tuned_and_searches_follow_its_plan(tmp_path):
    from matryoshka.index import MatryoshkaIndex

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4000, 64)) * np.linspace(3, 0.1, 64)).astype(np.float32)
    q = (rng.standard_normal((30, 64)) * np.linspace(3, 0.1, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    result = runner.invoke(
        app, ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "ix")]
    )
    assert result.exit_code == 0, result.output
    plan = next(x for x in result.output.splitlines() if x.startswith("structure: ")).split("plan: ")[1]
    index = MatryoshkaIndex.load(tmp_path / "ix")
    assert index.default_plan == plan and index.ntotal == 4000  # the held-out calibration rows were added back
    assert sorted(index.ids.tolist()) == list(range(4000))  # ids still name rows of x.npy
    np.testing.assert_array_equal(index.search(x[:5], 1)[1][:, 0], np.arange(5))
    search = ["index", "search", "--index", str(tmp_path / "ix"), "--queries", str(tmp_path / "q.npy")]
    runner.invoke(app, [*search, "--out", str(tmp_path / "default.npz")])
    runner.invoke(app, [*search, "--plan", plan, "--out", str(tmp_path / "named.npz")])
    default, named = np.load(tmp_path / "default.npz"), np.load(tmp_path / "named.npz")
    np.testing.assert_array_equal(default["ids"], named["ids"])
    np.save(tmp_path / "none.npy", q[:0])
    empty = runner.invoke(app, [*search[:-1], str(tmp_path / "none.npy")])
    assert empty.exit_code == 2 and "holds no queries (shape (0, 64))" in empty.output
    build = ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "small")]
    result = runner.invoke(app, [*build, "--objective", "memory", "--target-recall", "0.8"])
    assert result.exit_code == 0, result.output
    assert MatryoshkaIndex.load(tmp_path / "small").encoding in ("float16", "int8")  # compact codes keep 0.8
    result = runner.invoke(app, [*build, "--objective", "size", "--force"])
    assert result.exit_code == 2 and "objective must be latency or memory" in result.output


@pytest.mark.parametrize(
    "command", [[], ["train"], ["eval"], ["index"], ["index", "build"], ["adapt", "fit"], ["search"]]
)
def test_dash_h_is_help(command):
    short, long = runner.invoke(app, [*command, "-h"]), runner.invoke(app, [*command, "--help"])
    assert short.exit_code == long.exit_code == 0 and "Usage:" in short.output
    assert short.output == long.output


def test_one_line_errors_catches_matryoshka_errors_only():
    from matryoshka.cli._common import int_list, new_app, one_line_errors
    from matryoshka.errors import InputError
    from matryoshka.index import CorruptIndexError

    toy = new_app()

    @toy.command()
    @one_line_errors
    def boom(kind: str = "input") -> None:
        if kind == "bug":
            raise KeyError("a bug keeps its traceback")
        raise {"input": InputError("bad input"), "index": CorruptIndexError("corrupt index")}[kind]

    @toy.command()
    def other() -> None:  # a second command, so that `boom` is a sub-command
        pass

    result = runner.invoke(toy, ["boom", "--kind", "index"])
    assert result.exit_code == 2 and result.output == "error: corrupt index\n"
    result = runner.invoke(toy, ["boom"])
    assert result.exit_code == 2 and result.output == "error: bad input\n"
    result = runner.invoke(toy, ["boom", "--kind", "bug"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)
    assert int_list("8,16", "--dims") == [8, 16]
    with pytest.raises(InputError, match="bad --dims: '8,x'"):
        int_list("8,x", "--dims")


def test_index_add_delete_compact_info_with_string_ids(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "names.txt").write_text("\n".join(f"img/{i}.png" for i in range(300)))
    ix = str(tmp_path / "ix")
    build = ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--ids", str(tmp_path / "names.txt")]
    assert runner.invoke(app, [*build, "--out", ix, "--shortlist-dims", "4"]).exit_code == 0
    np.save(tmp_path / "new.npy", x[:2] + 5)
    (tmp_path / "new.txt").write_text("a/b?c=1\nnew-2")
    add = ["index", "add", "--index", ix, "--embeddings", str(tmp_path / "new.npy"), "--ids", str(tmp_path / "new.txt")]
    result = runner.invoke(app, add)
    assert result.exit_code == 0 and "added 2 vectors; 302" in result.output, result.output
    again = runner.invoke(app, add)
    assert again.exit_code == 2 and "already in the index" in again.output
    result = runner.invoke(app, ["index", "delete", "--index", ix, "img/0.png", "new-2"])
    assert result.exit_code == 0 and "deleted 2 vectors; 300" in result.output
    assert "not in the index" in runner.invoke(app, ["index", "delete", "--index", ix, "img/0.png"]).output
    info = json.loads(runner.invoke(app, ["index", "info", "--index", ix]).output)
    assert (info["ntotal"], info["segment_rows"], info["index_deleted"], info["id_kind"]) == (300, 2, 1, "str")
    result = runner.invoke(app, ["index", "compact", "--index", ix])
    assert result.exit_code == 0 and "2 logged additions and 2 deletions" in result.output, result.output
    info = json.loads(runner.invoke(app, ["index", "info", "--index", ix]).output)
    assert (info["ntotal"], info["segment_rows"], info["version"]) == (300, 0, "v-000002")
    np.save(tmp_path / "q.npy", np.stack([x[0] + 5, x[1]]))
    result = runner.invoke(app, ["index", "search", "--index", ix, "--queries", str(tmp_path / "q.npy"), "--k", "1"])
    assert "query 0: a/b?c=1 (1.000)" in result.output and "query 1: img/1.png" in result.output


def test_index_build_refuses_to_replace_without_force_and_add_reads_ids_by_the_index_kind(tmp_path):
    x = np.random.default_rng(2).standard_normal((50, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "names.txt").write_text("\n".join(f"n{i}" for i in range(50)))
    ix = str(tmp_path / "ix")
    build = ["index", "build", "--embeddings", str(tmp_path / "x.npy"), "--out", ix, "--shortlist-dims", "4"]
    assert runner.invoke(app, [*build, "--ids", str(tmp_path / "names.txt"), "--shortlist", "hnsw"]).exit_code == 0
    again = runner.invoke(app, build)
    assert again.exit_code == 2 and "already holds an index" in again.output and "--force" in again.output
    np.save(tmp_path / "one.npy", x[:1] + 1)
    (tmp_path / "digits.txt").write_text("0042\n")  # digits, but this index has string ids
    add = [
        "index",
        "add",
        "--index",
        ix,
        "--embeddings",
        str(tmp_path / "one.npy"),
        "--ids",
        str(tmp_path / "digits.txt"),
    ]
    assert runner.invoke(app, add).exit_code == 0
    info = json.loads(runner.invoke(app, ["index", "info", "--index", ix]).output)
    assert info["shortlist"] == "hnsw" and info["ntotal"] == 51
    assert (
        runner.invoke(app, ["index", "delete", "--index", ix, "--ids-file", str(tmp_path / "digits.txt")]).exit_code
        == 0
    )
    nothing = runner.invoke(app, ["index", "delete", "--index", ix])
    assert nothing.exit_code == 2 and "--ids-file" in nothing.output
    assert runner.invoke(app, [*build, "--force"]).exit_code == 0


class _FakeTextRun:
    """A finished run as `mrl encode` sees it: its path, its recorded nesting and its encoder (random rows here)."""

    def __init__(self, path, nesting):
        self.path, self.info = path, {"nesting": nesting}

    def encode_path(self, inputs, dim, **_):
        lines = [line for line in inputs.read_text().splitlines() if line.strip()]
        z = np.random.default_rng(0).standard_normal((len(lines), 384)).astype(np.float32)
        return z[:, : dim or 384], [str(i) for i in range(len(lines))]


def test_encode_records_the_nesting_that_index_build_shortlists_with(tmp_path, monkeypatch):
    from matryoshka.index import MatryoshkaIndex
    from matryoshka.runs import TrainedRun

    run = tmp_path / "run"
    nesting = [16, 32, 64, 128, 384]  # not what the rule gives a 384-d model (12, 24, 48, ...)
    monkeypatch.setattr(TrainedRun, "load", classmethod(lambda cls, path, device="cpu": _FakeTextRun(path, nesting)))
    texts = tmp_path / "t.txt"
    texts.write_text("".join(f"text {i}\n" + ("\n" if i == 3 else "") for i in range(60)))
    encoded = runner.invoke(
        app, ["encode", "--checkpoint", str(run), "--inputs", str(texts), "--out", str(tmp_path / "z.npy")]
    )
    assert encoded.exit_code == 0, encoded.output
    # Row numbers of a text file go to z.rows.txt (not z.names.txt, which holds file paths for --ids).
    assert (tmp_path / "z.rows.txt").read_text().split() == [str(i) for i in range(60)]
    assert not (tmp_path / "z.names.txt").exists() and "z.rows.txt" in encoded.output
    record = json.loads((tmp_path / "z.nesting.json").read_text())
    assert record == {"run": str(run.resolve()), "dim": 384, "nesting": nesting}
    build = ["index", "build", "--embeddings", str(tmp_path / "z.npy"), "--shortlist", "flat"]
    assert runner.invoke(app, [*build, "--out", str(tmp_path / "ix")]).exit_code == 0
    assert MatryoshkaIndex.load(tmp_path / "ix").shortlist_dims == [16, 32]  # the run's dims from d/32 to d/8
    (tmp_path / "z.nesting.json").unlink()
    assert runner.invoke(app, [*build, "--out", str(tmp_path / "rule")]).exit_code == 0
    assert MatryoshkaIndex.load(tmp_path / "rule").shortlist_dims == [12, 24, 48]  # the nesting rule for 384
    small = [
        "encode",
        "--checkpoint",
        str(run),
        "--inputs",
        str(texts),
        "--out",
        str(tmp_path / "z.npy"),
        "--dim",
        "64",
    ]
    assert runner.invoke(app, small).exit_code == 0
    assert json.loads((tmp_path / "z.nesting.json").read_text())["nesting"] == [16, 32, 64]


def test_shortlist_dims_follow_the_nesting(tmp_path):
    from matryoshka.nesting import read_embeddings_nesting, shortlist_dims_for, write_embeddings_nesting

    write_embeddings_nesting(tmp_path / "z.npy", tmp_path, [12, 24, 48, 384], 48)
    assert read_embeddings_nesting(tmp_path / "z.npy", 48) == [12, 24, 48]
    assert read_embeddings_nesting(tmp_path / "z.npy", 384) is None  # written for another file than this one

    assert shortlist_dims_for(384) == [12, 24, 48] and shortlist_dims_for(512) == [16, 32, 64]
    assert shortlist_dims_for(64, [2, 4, 8, 16, 32, 64]) == [2, 4, 8] and shortlist_dims_for(8) == [8]
    assert shortlist_dims_for(64, [32, 64]) == [32]  # none from d/32 to d/8: the smallest below d
    assert read_embeddings_nesting("/nonexistent/z.npy", 64) is None
