"""`mrl index build | add | delete | compact | info | tune | search | export`: index folders (`mrl search`, hidden,
is the same search). Writes go through the folder's write-ahead log, like the service's; `--texts` keeps a text
beside each id. `export` moves an index and its plan to Qdrant or Milvus; `search --index URI --collection NAME`
runs plans there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from matryoshka.cli._common import int_list, new_app, one_line_errors
from matryoshka.errors import InputError

app = new_app("Build, update, tune and search Matryoshka index folders.")
DEFAULT_TARGET_RECALL = 0.95  # recall@k vs exact search that build and tune keep unless told otherwise
IdsFile = Annotated[
    Path | None,
    typer.Option(help=".npy of integer ids, or a text file of one id per line (default: consecutive integers)"),
]


def read_ids(path: Path, kind: str | None = None) -> list:
    """Ids from a .npy of integers, or a text file with one id per line, read as the index's id ``kind`` (for a new
    index: integers if every line is one, else strings)."""
    from matryoshka.index.ids import parse_id
    from matryoshka.io import read_npy

    if path.suffix == ".npy":
        return read_npy(path, "ids").ravel().tolist()
    if not path.exists():
        raise InputError(f"ids file {path} does not exist")
    lines = path.read_text().splitlines()
    blank = next((i for i, line in enumerate(lines, 1) if not line), None)
    if blank is not None:
        raise InputError(f"ids file {path}: line {blank} is empty")
    if kind is None:
        kind = "int" if all(x.strip().isdigit() for x in lines) else "str"
    return [parse_id(x, kind) for x in lines]


def read_texts(path: Path, embeddings: Path | None = None, vectors: np.ndarray | None = None) -> list[str]:
    """The texts of ``path``, one a line (split as ``mrl encode`` splits a .txt file), refused in one line when the
    file is missing, not UTF-8 or empty, when a line is blank (a text missing, or a stray line: the rows would no
    longer line up), or when there is not one per row of ``vectors`` (read from ``embeddings``)."""
    if not path.is_file():
        raise InputError(f"texts file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"texts file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not lines:
        raise InputError(f"texts file {path} is empty")
    blank = next((i for i, line in enumerate(lines, 1) if not line.strip()), None)
    if blank is not None:
        raise InputError(f"{path}: line {blank} is empty or blank: give one text per row, with no empty lines")
    if vectors is not None and vectors.ndim == 2 and len(lines) != len(vectors):
        raise InputError(
            f"--texts {path} has {len(lines):,} lines but --embeddings {embeddings} has {len(vectors):,} rows: give "
            "one text per row, in the same order"
        )
    return lines


@app.command("build")
@one_line_errors
def build(
    embeddings: Annotated[Path, typer.Option(help=".npy (N, d) full-dim embeddings")],
    out: Annotated[Path, typer.Option(help="index folder (a new version is written atomically)")],
    ids: IdsFile = None,
    texts: Annotated[
        Path | None,
        typer.Option(
            help="a text file with one text per row of --embeddings, in the same order, kept beside the ids (search "
            "results return them: mrl serve's page, return_text)"
        ),
    ] = None,
    shortlist_dims: Annotated[
        str | None,
        typer.Option(
            help="comma-separated prefix sizes with a FAISS index (candidates for autotune; default: the embeddings' "
            "nesting dims from d/32 to d/8, from OUT.nesting.json of mrl encode, else the nesting rule for their dim)"
        ),
    ] = None,
    encoding: Annotated[str, typer.Option(help="float32, float16 or int8")] = "float32",
    shortlist: Annotated[
        str,
        typer.Option(help="auto (autotune picks the structure and the default plan), flat (exact) or hnsw (graph)"),
    ] = "auto",
    tune_queries: Annotated[
        Path | None,
        typer.Option(help="with --shortlist auto: .npy calibration queries (default: 1,000 held-out corpus rows)"),
    ] = None,
    target_recall: Annotated[
        float, typer.Option(help="with --shortlist auto: recall@10 vs exact to keep")
    ] = DEFAULT_TARGET_RECALL,
    objective: Annotated[
        str,
        typer.Option(
            help="with --shortlist auto: latency (fastest) or memory (smallest: float16/int8 rows, compact graph codes)"
        ),
    ] = "latency",
    full_vectors: Annotated[
        str,
        typer.Option(
            help="where the full-dim vectors live when opened: ram, mmap, or disk (direct I/O per query; the plan is "
            "then tuned and timed on the disk tier)"
        ),
    ] = "ram",
    rotate: Annotated[
        str,
        typer.Option(
            help="shortlist prefixes: auto (autotune tries raw and rotated, keeps the faster), raw (the first dims), "
            "or svd (the first coordinates in a basis fitted on the corpus)"
        ),
    ] = "auto",
    max_bytes_per_vector: Annotated[
        float | None,
        typer.Option(help="with --shortlist auto: the fastest structure holding at most this many bytes per vector"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an index already in --out")] = False,
) -> None:
    """Build an index from embeddings and save it; by default tuned to recall@10 0.95 (structure and plan)."""
    from matryoshka.index import MatryoshkaIndex
    from matryoshka.index.autotune import build_tuned
    from matryoshka.index.basis import check_rotation, fit_index_basis
    from matryoshka.io import read_npy

    _check_build_options(out, force, shortlist, tune_queries, target_recall, full_vectors)
    check_rotation(rotate)
    vectors = read_npy(embeddings, "embeddings")
    kept = read_texts(texts, embeddings, vectors) if texts is not None else None
    options = {
        "shortlist_dims": _shortlist_dims(shortlist_dims, embeddings, vectors),
        "encoding": encoding,
        "shortlist": "flat" if shortlist == "auto" else shortlist,
        "full_vectors": full_vectors,
    }
    given_ids = read_ids(ids) if ids is not None else None
    if shortlist == "auto":
        queries = read_npy(tune_queries, "queries") if tune_queries is not None else None
        tuning = {"verbose": True, "objective": objective, "tier_folder": out, "rotate": rotate}
        tuning["max_bytes_per_vector"] = max_bytes_per_vector
        index, tuned = build_tuned(vectors, given_ids, 10, target_recall, queries, texts=kept, **tuning, **options)
        if tuned is not None:
            prefixes = "rotated (svd basis)" if index.rotated else "raw"
            typer.echo(
                f"structure: {index.shortlist} over {index.shortlist_dims} dims ({prefixes} prefixes, "
                f"{index.shortlist_codes} codes), {index.encoding} full-dim codes; plan: {index.default_plan}"
            )
            typer.echo(f"recall@10 vs exact {tuned.recall:.4f}, {tuned.latency_ms:.3f} ms per single query")
    else:
        index = MatryoshkaIndex.build(vectors, given_ids, kept, **options)
        if rotate == "svd":
            index = index.with_basis(fit_index_basis(index))
    folder = index.save(out)
    with_texts = " with their texts" if index.keeps_texts else ""
    typer.echo(
        f"indexed {index.ntotal} vectors of dim {index.dim}{with_texts} ({index.bytes_per_vector()} bytes each) in "
        f"{folder}"
    )


def _shortlist_dims(given: str | None, embeddings: Path, vectors: np.ndarray) -> list[int]:
    """The given prefix sizes, else those of the embeddings' own nesting (recorded by mrl encode), else the
    nesting rule's for their dim: sizes the model was trained at, not one fixed size."""
    from matryoshka.nesting import read_embeddings_nesting, shortlist_dims_for

    if given is not None:
        return int_list(given, "--shortlist-dims")
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    return shortlist_dims_for(dim, read_embeddings_nesting(embeddings, dim)) if dim else [16]


def _check_build_options(
    out: Path, force: bool, shortlist: str, tune_queries: Path | None, target_recall: float, full_vectors: str
) -> None:
    from matryoshka.index.disk import check_tier

    if (out / "CURRENT").exists() and not force:
        raise InputError(f"{out} already holds an index: add to it with mrl index add, or replace it with --force")
    if shortlist not in ("auto", "flat", "hnsw"):
        raise InputError(f"--shortlist must be auto, flat or hnsw, got {shortlist!r}")
    if tune_queries is not None and shortlist != "auto":
        raise InputError("--tune-queries goes with --shortlist auto: autotune needs calibration queries")
    if not 0 < target_recall <= 1:
        raise InputError(f"--target-recall must be in (0, 1], got {target_recall}")
    check_tier(full_vectors)


@app.command("add")
@one_line_errors
def add(
    index: Annotated[Path, typer.Option(help="index folder")],
    embeddings: Annotated[Path | None, typer.Option(help=".npy (n, d) embeddings to add")] = None,
    ids: IdsFile = None,
    texts: Annotated[
        Path | None,
        typer.Option(
            help="a text file, one text per line, kept beside the new ids: one per row of --embeddings, or without "
            "--embeddings the texts to add, embedded with --model at the index's dim"
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="with --texts and no --embeddings: the run folder of the text model")
    ] = None,
    model_prefix: Annotated[
        bool, typer.Option(help="let a wider --model add with any prefix (default: only the dims it was trained for)")
    ] = False,
) -> None:
    """Add vectors (or texts, embedded with a text run), with the texts kept beside their ids: appended to the
    folder's log (O(n) on disk), durable when the command returns."""
    from matryoshka.index import IndexStore
    from matryoshka.io import read_npy

    if embeddings is None and texts is None:
        raise InputError("give --embeddings (and --texts to keep beside them), or --texts with --model")
    if embeddings is None and model is None:
        raise InputError(
            "--texts needs --model RUN: the run folder of the text model that embeds them (or give --embeddings of "
            "the same rows, and the texts are kept beside them as they are)"
        )
    if embeddings is not None and model is not None:
        raise InputError("--model embeds --texts given without --embeddings; with --embeddings, drop --model")
    with IndexStore.open(index) as store:  # first, so a busy or broken folder is refused before any embedding
        new_ids = read_ids(ids, store.id_kind) if ids is not None else None
        if embeddings is not None:
            vectors = read_npy(embeddings, "embeddings")
            kept = read_texts(texts, embeddings, vectors) if texts is not None else None
        else:
            kept = read_texts(texts)
            vectors = _embed_texts(kept, texts, model, store.dim, index, model_prefix)
        added = store.add(vectors, new_ids, kept)
        with_texts = " with their texts" if kept is not None else ""
        typer.echo(f"added {len(added)} vectors{with_texts}; {store.ntotal} in {index}")


def _embed_texts(lines: list[str], path: Path, model: Path, dim: int, index: Path, model_prefix: bool) -> np.ndarray:
    """The lines of the texts file ``path`` embedded by the text run ``model`` at ``dim``, with the server's checks."""
    from matryoshka.runs import TrainedRun
    from matryoshka.service.model import check_texts, max_text_chars, served_dim

    run = TrainedRun.load(model)
    if run.kind != "text":
        raise InputError(f"{model} is an image model; --texts needs a text model")
    served_dim(run, dim, model_prefix, model, index)
    check_texts(lines, max_text_chars(run), where=f"{path}: line {{}}", first=1)
    return run.encode_texts(lines, dim)


@app.command("delete")
@one_line_errors
def delete(
    index: Annotated[Path, typer.Option(help="index folder")],
    ids: Annotated[
        list[str] | None, typer.Argument(help="ids to delete (read as integers when the index has integer ids)")
    ] = None,
    ids_file: Annotated[Path | None, typer.Option(help="also the ids in this .npy or text file (one per line)")] = None,
) -> None:
    """Delete vectors by id (all or none)."""
    from matryoshka.index import IndexStore
    from matryoshka.index.ids import parse_id

    if not ids and ids_file is None:
        raise InputError("give the ids to delete, as arguments or with --ids-file")
    with IndexStore.open(index) as store:
        doomed = [parse_id(i, store.id_kind) for i in ids or []]
        doomed += read_ids(ids_file, store.id_kind) if ids_file is not None else []
        count = store.delete(doomed)
        typer.echo(f"deleted {count} vectors; {store.ntotal} in {index}")


@app.command("compact")
@one_line_errors
def compact(index: Annotated[Path, typer.Option(help="index folder")]) -> None:
    """Fold the log into a new version of the index (drops deleted rows, indexes the added ones)."""
    from matryoshka.index import IndexStore

    with IndexStore.open(index, compact_threshold=0) as store:
        before = store.info()
        name = store.compact()
        typer.echo(
            f"compacted {before['segment_rows']} logged additions and "
            f"{before['index_deleted'] + before['segment_deleted']} deletions into {index / name}"
        )


@app.command("info")
@one_line_errors
def info(index: Annotated[Path, typer.Option(help="index folder")]) -> None:
    """What the folder holds: size, dims, encoding, structures, the log and the pending writes (JSON)."""
    import json

    from matryoshka.index import IndexStore

    with IndexStore.open(index, writable=False) as store:
        typer.echo(json.dumps(store.info(), indent=2))


@app.command("tune")
@one_line_errors
def tune(
    index: Annotated[Path, typer.Option(help="index folder")],
    queries: Annotated[Path, typer.Option(help=".npy calibration queries (Q, d)")],
    k: Annotated[int, typer.Option(help="results per query")] = 10,
    target_recall: Annotated[
        float, typer.Option(help="recall@k relative to exact full-dim search (the default of mrl index build too)")
    ] = DEFAULT_TARGET_RECALL,
    save: Annotated[
        bool,
        typer.Option(
            help="store the plan as the index's default (searches naming no plan follow it; needs the folder's "
            "writer lock, so not while mrl serve writes to it); --no-save only prints it"
        ),
    ] = True,
) -> None:
    """Find the fastest plan that keeps the target recall@k on the saved structure; prints it in the --plan syntax
    of `mrl index search` and stores it as the index's default plan, as `mrl index build` does."""
    from matryoshka.index import IndexStore
    from matryoshka.index.autotune import autotune
    from matryoshka.index.plans import plan_to_text
    from matryoshka.io import read_npy

    calibration = read_npy(queries, "queries")
    with IndexStore.open(index, writable=save, compact_threshold=0) as store:
        tuned = autotune(store, calibration, k, target_recall)
        if save:
            store.record_plan(plan_to_text(tuned.plan), k)
    typer.echo(f"plan: {plan_to_text(tuned.plan)}" + (" (saved as the index's default plan)" if save else ""))
    typer.echo(
        f"recall@{k} vs full-dim exact: {tuned.recall:.4f}; {tuned.latency_ms:.3f} ms per single query (median); "
        f"{tuned.flops_saving:.1f}x fewer multiply-adds than full-dim search"
    )


@app.command("export")
@one_line_errors
def export(
    index: Annotated[Path, typer.Option(help="index folder")],
    to: Annotated[
        str,
        typer.Option(
            help="engine address: qdrant:PATH, qdrant+http://HOST:6333, milvus:FILE.db, milvus+http://HOST:19530, "
            "postgres:DIR (embedded PostgreSQL) or postgresql://USER@HOST:5432/DB"
        ),
    ],
    collection: Annotated[str, typer.Option(help="collection to create, or to resume an export into")],
    dims: Annotated[
        str | None,
        typer.Option(help="comma-separated prefix sizes to store (default: shortlist dims, the plan's, the full dim)"),
    ] = None,
    plan: Annotated[
        str | None, typer.Option(help="plan to record with the collection (default: the one the index was tuned to)")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="vectors per insert call")] = 256,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="drop the collection first and export anew (how a collection gets other --dims)"
        ),
    ] = False,
) -> None:
    """Copy an index and its plan to a Qdrant or Milvus collection; ids already there are skipped (resumable)."""
    from matryoshka.engines import export_index

    chosen = int_list(dims, "--dims") if dims else None
    report = export_index(index, to, collection, chosen, plan, batch_size, progress=True, replace=replace)
    typer.echo(
        f"exported {report.sent} vectors to {to} collection {collection!r} in {report.seconds:.1f} s "
        f"({report.rate:,.0f} vectors/s"
        + (f"; {report.index_seconds:.1f} s of it indexing" if report.index_seconds >= 0.1 else "")
        + ")"
        + (f"; {report.skipped} were already there" if report.skipped else "")
    )


@app.command("search")
@one_line_errors
def search(
    index: Annotated[str, typer.Option(help="index folder, or an engine address (with --collection)")],
    queries: Annotated[Path, typer.Option(help=".npy (Q, d) query embeddings")],
    plan: Annotated[
        str | None,
        typer.Option(
            help="full | adaptive:DS:K:DR | funnel:D1xK1,D2xK2,... (default: the plan the index was tuned to)"
        ),
    ] = None,
    k: Annotated[int, typer.Option(help="results per query")] = 10,
    out: Annotated[Path | None, typer.Option(help="write ids and scores to this .npz")] = None,
    mmap: Annotated[bool, typer.Option(help="memory-map the stored vectors")] = False,
    full_vectors: Annotated[
        str | None, typer.Option(help="ram, mmap or disk (default: the tier the index was built for)")
    ] = None,
    exact: Annotated[bool, typer.Option(help="allow a first stage without a shortlist structure (full scan)")] = False,
    collection: Annotated[
        str | None, typer.Option(help="with an engine address as --index: the collection to search")
    ] = None,
) -> None:
    """Search an index folder, or a Qdrant / Milvus collection, with a plan; prints the first queries' results, or
    writes them all with --out (the same .npz either way; then only a one-line summary is printed)."""
    from matryoshka.engines import looks_like_uri
    from matryoshka.index import IndexStore, parse_plan
    from matryoshka.io import read_npy

    parsed = parse_plan(plan) if plan is not None else None
    vectors = read_npy(queries, "queries")
    if vectors.ndim == 2 and len(vectors) == 0:  # nothing to answer: say so rather than print nothing
        raise InputError(f"queries file {queries} holds no queries (shape {vectors.shape})")
    if looks_like_uri(index) and not Path(index).exists():
        scores, ids = _search_engine(index, collection, vectors, k, parsed)
    else:
        if collection is not None:
            raise InputError(f"--collection goes with an engine address as --index; {index} is a folder")
        with IndexStore.open(Path(index), writable=False, mmap=mmap, full_vectors=full_vectors) as store:
            scores, ids = store.search(vectors, k, parsed, exact=exact)
    if out is not None:  # the file holds the results: one summary line, not the first queries' hits
        np.savez(out, ids=ids.astype(str) if ids.dtype == object else ids, scores=scores)
        typer.echo(f"wrote {ids.shape[0]} x {ids.shape[1]} results to {out}")
        return
    for row in range(min(5, len(ids))):
        hits = ", ".join(f"{i} ({s:.3f})" for i, s in zip(ids[row], scores[row], strict=True))
        typer.echo(f"query {row}: {hits}")


def _search_engine(uri: str, collection: str | None, queries: np.ndarray, k: int, plan):
    from matryoshka.engines import parse_uri, search

    parse_uri(uri)  # an unknown scheme is the first thing to say
    if collection is None:
        raise InputError(f"searching {uri} needs --collection NAME")
    return search(uri, collection, queries, k, plan)
