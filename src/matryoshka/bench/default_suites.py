"""The data sets of ``mrl bench defaults``: each a ``data:`` section (built once and cached where it must be) and the
model's size.

Data sets (all real, all offline):

* ``fashion_mnist``: 10,000 training images (seeded subset), the full 10,000 test images; cnn, 64 dims.
* ``digits``: scikit-learn's 1,797 8x8 handwritten digits; cnn, 64 dims.
* ``icons``: the Adwaita icon theme's PNGs (package adwaita-icon-theme), classed by context (actions, devices,
  status, ...); most are symbolic icons drawn in the alpha channel; cnn, 32x32 RGB, 64 dims.
* ``wordnet-table``: a feature table: all-MiniLM-L6-v2 embeddings (384 columns) of WordNet noun glosses, labelled
  by WordNet's lexicographer file (noun.animal, noun.artifact, ...); mlp, 64 dims.
* ``debian-pairs``: 6,000 Debian package (synopsis -> long description) pairs, split 80/10/10 as a pairs file is;
  the frozen-base fast path (``model.frozen_base: true``) on both sides: all-MiniLM-L6-v2 encodes the texts once,
  then one Matryoshka adaptor (MRL) and one adaptor trained at k alone (FF-k) per nesting dim are fitted on the
  training pairs with the default settings. Metric: test mAP@10 (every test synopsis searches every test
  description, cosine on the re-normalised prefix).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ICONS = Path("/usr/share/icons/Adwaita")
WORDNET = Path("/usr/share/wordnet/data.noun")
CACHE = Path.home() / ".cache" / "matryoshka" / "bench" / "defaults"


@dataclass(frozen=True)
class Suite:
    """A data set of the benchmark: its ``data:`` section, the model's size, and what it needs on this machine."""

    data: Callable[[bool], dict[str, Any]]
    model: dict[str, Any]
    needs: Path | None = None


def _icon_folder(quick: bool) -> dict[str, Any]:
    """The theme's PNGs as class folders of links (a class per context: actions, apps, devices, ...)."""
    root = CACHE / ("icons-quick" if quick else "icons")
    if not root.exists():
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        files = sorted(ICONS.glob("*x*/*/*.png"))
        if quick:
            files = [f for f in files if f.parent.parent.name == "32x32"]
        for f in files:
            size, context = f.parent.parent.name, f.parent.name
            (tmp / context).mkdir(parents=True, exist_ok=True)
            (tmp / context / f"{size}-{f.name}").symlink_to(f)
        tmp.rename(root)
    return {"name": "imagefolder", "path": str(root), "image_size": 32, "channels": 3}


def _wordnet_table(quick: bool) -> dict[str, Any]:
    """A Parquet table: MiniLM embeddings of noun glosses, labelled by lexicographer file (encoded once, cached)."""
    count = 2000 if quick else 12000
    file = CACHE / f"wordnet-nouns-{count}.parquet"
    if not file.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        from matryoshka.nn.text_encoder import encode_texts, load_sentence_transformer

        rows = []
        for line in WORDNET.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(" ") or "|" not in line:
                continue
            rows.append((int(line.split()[1]), line.split("|", 1)[1].strip()))
        pick = np.random.default_rng(0).permutation(len(rows))[:count]
        labels = [f"lexfile-{rows[i][0]:02d}" for i in pick]
        z = encode_texts(load_sentence_transformer("all-MiniLM-L6-v2"), [rows[i][1] for i in pick], progress=True)
        columns = {f"f{j}": z[:, j].numpy() for j in range(z.shape[1])}
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp")
        pq.write_table(pa.table({**columns, "label": labels}), tmp)
        tmp.rename(file)
    return {"name": "table", "path": str(file), "label_column": "label"}


def _debian_pairs(quick: bool) -> dict[str, Any]:
    from matryoshka.bench.texts import debian_pairs_file

    return {"name": "pairs", "path": str(debian_pairs_file(1000 if quick else 6000, CACHE))}


SUITES: dict[str, Suite] = {
    "fashion_mnist": Suite(
        lambda quick: {"name": "fashion_mnist", "train_subset": 2000 if quick else 10000},
        {"backbone": "cnn", "embed_dim": 64, "min_dim": 2},
        Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
    ),
    "digits": Suite(lambda quick: {"name": "digits"}, {"backbone": "cnn", "embed_dim": 64, "min_dim": 2}),
    "icons": Suite(_icon_folder, {"backbone": "cnn", "embed_dim": 64, "min_dim": 2}, ICONS),
    "wordnet-table": Suite(_wordnet_table, {"backbone": "mlp", "embed_dim": 64, "min_dim": 2}, WORDNET),
    "debian-pairs": Suite(_debian_pairs, {"frozen_base": True}, Path("/usr/lib/apt/apt-helper")),
}
