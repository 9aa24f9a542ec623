"""A finished run folder as one object: the model, how it preprocesses raw inputs, its class names.

Reading a run needs none of the training code (``image_model.py``, ``text_model.py``): ``mrl encode``, ``mrl eval``
and ``mrl serve`` import no ``matryoshka.train`` module.

A run folder is self-contained: ``TrainedRun.load(path)`` needs neither the training data nor the training
machine, so the same embeddings come out of ``mrl encode``, ``mrl serve --model`` and Python.

Example::

    run = TrainedRun.load("runs/my_pictures")
    z, names = run.encode_path("new_pictures/", dim=64)      # (N, 64) unit vectors, one per image
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from matryoshka.data.config import DataConfig, TextDataConfig
from matryoshka.data.images import Preprocess
from matryoshka.data.inputs import Inputs, read_inputs
from matryoshka.data.text_sources import load_text_data
from matryoshka.errors import InputError
from matryoshka.runs.image_model import load_model
from matryoshka.runs.text_model import is_text_model_name, is_text_run, load_text_model
from matryoshka.truncate import truncate

__all__ = ["TrainedRun", "evaluate_text_run", "is_text_model_name", "is_text_run"]


@dataclass
class TrainedRun:
    """A finished run folder: its model, how it preprocesses raw inputs, its class names and config.

    Example::

        import tempfile
        import numpy as np
        from matryoshka import TrainedRun, Trainer
        from matryoshka.train import parse_config

        out = tempfile.mkdtemp()
        config = {"data": {"name": "digits"}, "model": {"embed_dim": 16, "min_dim": 4},
                  "train": {"epochs": 1, "out_dir": out}}
        Trainer(parse_config(config), progress=False).fit()
        run = TrainedRun.load(out)                    # a finished run folder: model, preprocessing, class names
        z = run.encode_raw(np.full((3, 64), 8.0), dim=8)   # raw inputs: 3 flattened 8x8 images of 0-16 values
        print(run.kind, run.dim, z.shape)                   # image 16 (3, 8)
    """

    path: Path
    kind: str  # "image" (a classifier on images or feature vectors) or "text" (a SentenceTransformer)
    model: Any
    info: dict[str, Any]
    preprocess: Preprocess | None

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TrainedRun:
        """A run folder, a SentenceTransformer or transformers folder, or a text model name (``all-MiniLM-L6-v2``:
        the plain base model's embeddings)."""
        path = Path(path)
        if is_text_run(path) or is_text_model_name(path):
            results = path / "results.json"
            info = json.loads(results.read_text()) if results.is_file() else {}
            return cls(path, "text", load_text_model(path, torch.device(device)), info, None)
        model, info = load_model(path, device)
        pre = Preprocess.from_dict(info["preprocess"]) if info.get("preprocess") else None
        return cls(path, "image", model, info, pre)

    def training_data(self) -> Any:
        """The data the run was trained on, with the same splits, read again from the source its config names (a
        built-in data set, or the user's folder or file): an ``ImageData``, or text pairs for a text run."""
        if self.kind != "image":
            if "config" not in self.info:
                raise InputError(
                    f"{self.path} has no results.json naming its data (a text model, not a run, has no test split: "
                    "give mrl eval --queries and --documents files)"
                )
            return load_text_data(TextDataConfig.model_validate(self.info["config"]["data"]))
        from matryoshka.data import load_data

        return load_data(DataConfig.model_validate(self.info["config"]["data"]))

    @property
    def dim(self) -> int:
        if self.kind == "text":
            from matryoshka.nn.text_encoder import embedding_dimension

            return embedding_dimension(self.model)
        return int(self.info["config"]["model"]["embed_dim"])

    @property
    def class_names(self) -> list[str]:
        return list(self.info.get("class_names", []))

    def check_dim(self, dim: int | None) -> int:
        """``dim`` (default: the full dim), refused outside [1, the model's dim]."""
        full = self.dim
        if dim is not None and not 1 <= dim <= full:
            raise InputError(f"dim must be in [1, {full}] (the model's dim), got {dim}")
        return dim or full

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Full-dim embeddings of preprocessed model inputs (N, *input_shape)."""
        device = next(self.model.parameters()).device
        self.model.eval()
        return self.model.encode(x.to(device)).float().cpu()

    def encode_texts(
        self,
        texts: Sequence[str],
        dim: int | None = None,
        batch_size: int = 256,
        normalize: bool = True,
        progress: bool = False,
    ) -> np.ndarray:
        if self.kind != "text":
            raise InputError(f"{self.path} is an image model; give it images (or the feature table it was trained on)")
        from matryoshka.nn.text_encoder import encode_texts

        z = encode_texts(self.model, list(texts), batch_size, progress)
        return truncate(z, self.check_dim(dim), normalize).numpy()

    def encode_images(self, images: Sequence[bytes | str | Path], dim: int | None = None) -> np.ndarray:
        """Raw images (encoded bytes or paths) -> unit embeddings, with the run's stored preprocessing."""
        if self.kind == "text":  # before the preprocessing check: a text run has none, and needs none
            raise InputError(f"{self.path} is a text model; send texts")
        pre = self._need_preprocess()
        if pre.kind != "image":
            raise InputError(f"{self.path} was trained on feature vectors, not images")
        x = torch.stack([pre.load_image(img, name=str(i)) for i, img in enumerate(images)])
        return truncate(self.encode_tensor(x), self.check_dim(dim)).numpy()

    def encode_raw(self, rows: np.ndarray, dim: int | None = None) -> np.ndarray:
        """Raw values, one flattened input per row (0-255 pixels, or feature columns) -> unit embeddings."""
        if self.kind == "text":
            raise InputError(f"{self.path} is a text model; send texts")
        shape = tuple(self.info["input_shape"])
        width = int(np.prod(shape))
        if rows.ndim != 2 or rows.shape[1] != width:
            raise InputError(f"each input must have {width} numbers (shape {shape}), got {rows.shape[1:]}")
        x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).view(-1, *shape)
        if (
            self.preprocess is not None
        ):  # runs trained before the preprocessing was stored take model inputs as they are
            x = self.preprocess.normalize(x)
        return truncate(self.encode_tensor(x), self.check_dim(dim)).numpy()

    def encode_path(
        self,
        path: str | Path,
        dim: int | None = None,
        batch_size: int = 256,
        progress: bool = False,
        image_column: str | None = None,
        normalize: bool = True,
        skipped: list[str] | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Embeddings (N, dim) of everything ``path`` holds (unit length unless ``normalize=False``), one name a row.

        A folder holding files that are not readable images is an error naming them; pass a list as ``skipped`` to
        encode the rest instead and get "path: why" for each file left out."""
        dim = self.check_dim(dim)
        inputs: Inputs = read_inputs(path, self.preprocess, image_column, skip_bad=skipped is not None)
        if skipped is not None:
            skipped.extend(inputs.skipped)
        if self.kind == "text":
            if inputs.kind != "texts":
                raise InputError(f"{self.path} is a text model; give it a .txt file with one text per line")
            return self.encode_texts(inputs.texts(), dim, batch_size, normalize, progress), inputs.names
        if inputs.kind == "texts":
            raise InputError(f"{self.path} is an image model; {path} holds texts")
        pre = self._need_preprocess()
        parts = []
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("encoding", total=len(inputs))
            for x in inputs.batches(pre, batch_size):
                parts.append(truncate(self.encode_tensor(x), dim, normalize))
                bar.advance(task, len(x))
        return torch.cat(parts).numpy(), inputs.names

    def _need_preprocess(self) -> Preprocess:
        if self.preprocess is None:
            raise InputError(
                f"{self.path} records no preprocessing (a run trained before it was stored): retrain it to encode "
                "raw files"
            )
        return self.preprocess


def evaluate_text_run(
    run_dir: Path,
    dims: Sequence[int] | None = None,
    k: int = 10,
    queries: Path | None = None,
    documents: Path | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Retrieval metrics per dim of a finished text run: on its own test split (rebuilt from the saved config), or
    on the given query / document files."""
    from matryoshka.evaluate.text import evaluate_text_retrieval, read_text_pairs
    from matryoshka.inference import resolve_device
    from matryoshka.nesting import halving_nesting, validate_nesting

    run = TrainedRun.load(run_dir, resolve_device(device))
    nesting = run.info.get("nesting") or halving_nesting(run.dim, 12)
    chosen = validate_nesting(list(dims), run.dim) if dims else list(nesting)
    if queries is not None and documents is not None:
        q, corpus, relevant = read_text_pairs(queries, documents)
        source = f"{queries.name} / {documents.name}"
    else:
        q, corpus, relevant = run.training_data().retrieval_set("test")
        source = "the run's test split"
    per_dim = evaluate_text_retrieval(run.model, q, corpus, relevant, chosen, k)
    return {
        "source": source,
        "queries": len(q),
        "documents": len(corpus),
        "dims": chosen,
        "per_dim": {str(m): v for m, v in per_dim.items()},
    }
