"""Index versions on disk: ``ROOT/v-000007/`` folders of checksummed arrays and FAISS files, ``ROOT/CURRENT``
naming the live one, and beside each version its write-ahead log ``ROOT/wal-000007.log`` (see ``wal.py``).

A version folder is written under a temporary name, fsynced and renamed; switching ``CURRENT`` (an atomic
file replace) is the one commit point, so a process killed at any moment leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import faiss
import numpy as np

from matryoshka.index import wal
from matryoshka.index.basis import check_basis
from matryoshka.index.disk import DiskRows, check_tier
from matryoshka.index.errors import CorruptIndexError, IndexInputError, StoreBusyError
from matryoshka.index.faiss_rows import load_rows
from matryoshka.index.ids import load_ids, save_ids
from matryoshka.index.state import IndexArrays
from matryoshka.index.texts import load_texts, save_texts
from matryoshka.io import DIR_MODE, atomic_write_bytes, atomic_write_json, fsync_dir, fsync_file, sha256_file

if TYPE_CHECKING:
    from matryoshka.index.index import MatryoshkaIndex

# 3: kept texts (text_bytes/text_offsets/text_kept); 2: string ids (id_kind, id_bytes/id_offsets); 1: int64 ids.npy
# only. A version is written in the lowest format that holds it, so a release before texts still reads a folder
# without them, and refuses one with texts rather than dropping them at its next compaction.
FORMAT_VERSION = 3
READS = (1, 2, 3)


def current_name(root: Path) -> str:
    pointer = root / "CURRENT"
    if not pointer.exists():
        raise CorruptIndexError(f"{root} is not an index folder (no CURRENT file)")
    return pointer.read_text().strip()


def wal_path(root: Path, name: str) -> Path:
    """The write-ahead log that belongs to version ``name`` (``v-000007`` -> ``wal-000007.log``)."""
    return root / f"wal-{name[2:]}.log"


def next_name(root: Path) -> str:
    numbers = [int(p.name[2:]) for p in root.glob("v-*") if p.is_dir() and p.name[2:].isdigit()]
    return f"v-{max(numbers, default=0) + 1:06d}"


def write_version(index: MatryoshkaIndex, root: Path) -> str:
    """Write ``index`` (no deleted rows) as a new version folder under ``root``; ``CURRENT`` is not touched."""
    if index.n_deleted:
        raise ValueError("compact the index before writing it")
    root.mkdir(parents=True, exist_ok=True)
    name = next_name(root)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    os.chmod(tmp, DIR_MODE)
    try:
        state = index.arrays()
        files = {"codes": tmp / "codes.npy"}
        np.save(files["codes"], np.ascontiguousarray(state.codes))
        if state.scales is not None:
            files["scales"] = tmp / "scales.npy"
            np.save(files["scales"], np.ascontiguousarray(state.scales))
        files.update(save_ids(tmp, state.ids, index.id_kind or "int"))
        if state.texts is not None:
            files.update(save_texts(tmp, state.texts))
        if state.basis is not None:
            files["basis"] = tmp / "basis.npy"
            np.save(files["basis"], state.basis)
        for d, shortlist in state.shortlists.items():
            files[f"shortlist-{d}"] = tmp / f"shortlist-{d}.faiss"
            faiss.write_index(shortlist, str(files[f"shortlist-{d}"]))
        for file in files.values():
            fsync_file(file)
        meta = {
            "format": FORMAT_VERSION if state.texts is not None else 2,
            **index.options(),
            "id_kind": index.id_kind or "int",
            "ntotal": index.ntotal,
            "rotated": state.basis is not None,
            "sha256": {key: sha256_file(file) for key, file in files.items()},
        }
        atomic_write_json(tmp / "meta.json", meta)
        os.replace(tmp, root / name)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return name


def record_plan(root: Path, name: str, plan: str | None, k: int) -> None:
    """Make ``plan`` the default plan of version ``name`` (its meta.json, replaced atomically: a reader sees the
    old file or the new one). The caller holds the folder lock, so no compaction writes a version meanwhile."""
    path = root / name / "meta.json"
    meta = json.loads(path.read_text())
    meta["default_plan"], meta["default_plan_k"] = plan, k
    atomic_write_json(path, meta)


def set_current(root: Path, name: str) -> None:
    atomic_write_bytes(root / "CURRENT", name.encode())


def remove_others(root: Path, keep: str) -> None:
    """Delete every version folder, log and leftover temporary other than ``keep`` and its log."""
    for path in root.iterdir():
        stale_version = path.name.startswith(("v-", ".v-")) and path.name != keep
        stale_log = path.name.startswith("wal-") and path != wal_path(root, keep)
        if stale_version and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif stale_log or (stale_version and path.is_file()):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(root: Path) -> Iterator[None]:
    """Hold the folder's writer lock (fails at once if another process holds it)."""
    handle = open(root / "LOCK", "a+b")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusyError(f"{root} is open for writing by another process (mrl serve or mrl index)") from None
        yield
    finally:
        handle.close()


def save(index: MatryoshkaIndex, path: str | os.PathLike) -> Path:
    """Write ``index`` as the new current version of ``path`` and drop the older ones."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    with folder_lock(root):
        name = write_version(index, root)
        set_current(root, name)
        remove_others(root, name)
    return root / name


class StoredVersion(NamedTuple):
    """A version as read from its folder: the index's arrays and its constructor options
    (``MatryoshkaIndex.from_arrays(state, **options)`` makes the index)."""

    state: IndexArrays
    options: dict


class CurrentVersion(NamedTuple):
    """The current version of a folder with its logged writes: its name, the version, the log's whole records,
    the byte offset just after the last of them and the log's size (a torn last record lies between the two)."""

    name: str
    stored: StoredVersion
    records: list
    offset: int
    size: int


def read_current(
    root: Path, mmap: bool = False, verify: bool = True, full_vectors: str | None = None, retry: bool = True
) -> CurrentVersion:
    """The current version and its log. ``retry``: a reader may race a writer's compaction, which removes the
    version it was reading; it then reads the new current one (up to 5 times). Whatever it returns was current
    after it was read, so the log read belongs to it (a compaction moves the log's tail on to the next one)."""
    for attempt in range(5):
        name = current_name(root)
        try:
            stored = read_version(root, name, mmap, verify, full_vectors)
            records, offset, size = wal.read_records(wal_path(root, name), stored.options["dim"])
        except wal.CorruptLogError as e:
            raise CorruptIndexError(f"{root}: {e}; the log is left as it is") from None
        except (CorruptIndexError, FileNotFoundError):
            if not retry or attempt == 4 or current_name(root) == name:
                raise
            continue
        if not retry or current_name(root) == name:
            break
    return CurrentVersion(name, stored, records, offset, size)


def read_version(
    root: Path, name: str, mmap: bool = False, verify: bool = True, full_vectors: str | None = None
) -> StoredVersion:
    """Open version ``name``. ``full_vectors`` says where the full-dim codes live: "ram" (read into memory),
    "mmap" (memory-mapped) or "disk" (read per query with direct I/O, :mod:`matryoshka.index.disk`); default
    "mmap" when ``mmap`` is true, else the tier the version was built for (meta.json), else "ram"."""
    folder = root / name
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptIndexError(f"cannot read {folder / 'meta.json'}: {e}") from e
    if meta.get("format") not in READS:
        raise CorruptIndexError(
            f"{folder} has index format {meta.get('format')}; this release reads formats {READS[0]} to {READS[-1]}"
        )
    tier = check_tier(full_vectors or ("mmap" if mmap else meta.get("full_vectors", "ram")))
    arrays = {}
    for key, digest in meta["sha256"].items():
        file = folder / (f"{key}.faiss" if key.startswith("shortlist-") else f"{key}.npy")
        if not file.exists():
            raise CorruptIndexError(f"{file} is missing")
        if verify and sha256_file(file) != digest:
            raise CorruptIndexError(f"{file} does not match its checksum: the index is corrupt")
        try:
            if key.startswith("shortlist-"):
                # A pq graph's table of code-to-code distances (12 MiB at 48 bytes a code) serves only faiss's own
                # graph building, which these graphs do not use (shortlists.py).
                arrays[key] = faiss.read_index(str(file), faiss.IO_FLAG_PQ_SKIP_SDC_TABLE)
            elif key == "codes" and tier == "disk":
                arrays[key] = DiskRows(file)
            elif key == "codes" and tier == "ram":
                arrays[key] = load_rows(file)  # laid out for the one-call search (compiled.py)
            else:
                arrays[key] = np.load(file, mmap_mode="r" if (tier == "mmap" and key == "codes") else None)
        except (ValueError, OSError, RuntimeError) as e:
            raise CorruptIndexError(f"{file} is not a readable array (truncated?): {e}") from e
    options = {
        "dim": meta["dim"],
        "shortlist_dims": meta["shortlist_dims"],
        "encoding": meta["encoding"],
        "shortlist": meta.get("shortlist", "flat"),
        "hnsw_m": meta.get("hnsw_m", 32),
        "hnsw_ef_search": meta.get("hnsw_ef_search", 128),
        "shortlist_codes": meta.get("shortlist_codes", "float32"),
        "full_vectors": tier,  # where the rows live now (a later save records it)
        "default_plan": meta.get("default_plan"),
        "default_plan_k": meta.get("default_plan_k", 10),
    }
    kind = meta.get("id_kind", "int")
    codes = arrays["codes"]
    try:
        ids = load_ids(arrays, kind)
    except (KeyError, ValueError, UnicodeDecodeError) as e:
        raise CorruptIndexError(f"{folder}: cannot read its ids: {e}") from e
    if codes.shape != (meta["ntotal"], meta["dim"]) or ids.shape != (meta["ntotal"],):
        raise CorruptIndexError(f"{folder} arrays do not match its meta.json ({codes.shape}, {ids.shape})")
    try:
        texts = load_texts(arrays, meta["ntotal"])
    except (KeyError, ValueError, UnicodeDecodeError) as e:
        raise CorruptIndexError(f"{folder}: cannot read its texts: {e}") from e
    shortlists = {}
    for d in options["shortlist_dims"]:
        shortlist = arrays.get(f"shortlist-{d}")
        if shortlist is None or shortlist.ntotal != meta["ntotal"] or shortlist.d != d:
            raise CorruptIndexError(f"{folder}: the shortlist index for dim {d} is missing or does not match")
        shortlists[d] = shortlist
    basis = arrays.get("basis")
    if basis is not None:
        try:
            basis = check_basis(basis, meta["dim"])
        except IndexInputError as e:
            raise CorruptIndexError(f"{folder / 'basis.npy'}: {e}") from None
    dead = np.zeros(len(ids), dtype=bool)
    state = IndexArrays(codes, arrays.get("scales"), ids, dead, shortlists, kind if len(ids) else None, basis, texts)
    return StoredVersion(state, options)
