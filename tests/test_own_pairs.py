"""The user's own text pairs: a CSV / JSONL file of (query, document[, negative]) rows fine-tunes a local model."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from matryoshka import InfoNCELoss, MatryoshkaLoss
from matryoshka.data import CorruptDataError
from matryoshka.data.pairs import load_pairs
from matryoshka.data.wordnet import read_synsets
from matryoshka.train import ConfigError, parse_config
from matryoshka.train.text_trainer import TextTrainer


def _write_pairs(path, n=120, negatives=False):
    synsets = [s for s in read_synsets() if len(s.lemmas) >= 1][:n]
    rows = [{"question": s.lemmas[0], "answer": s.definition} for s in synsets]
    if negatives:
        for i, row in enumerate(rows):
            row["wrong"] = synsets[(i + 7) % n].definition
    frame = pd.DataFrame(rows)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


def _config(tmp_path, path, **data):
    return parse_config(
        {
            "data": {
                "name": "pairs",
                "path": str(path),
                "query_column": "question",
                "document_column": "answer",
                **data,
            },
            "model": {"nesting": [48, 384], "max_seq_length": 32},
            "train": {"batch_size": 16, "epochs": 1, "evaluate_base": False, "out_dir": str(tmp_path / "run")},
        }
    )


def test_pairs_file_fine_tunes_with_hard_negatives_and_small_eval_sets(tmp_path):
    path = _write_pairs(tmp_path / "faq.jsonl", negatives=True)
    cfg = _config(tmp_path, path, negative_column="wrong", val_fraction=0.05, test_fraction=0.05)
    data = load_pairs(path, "question", "answer", "wrong", 0.05, 0.05)
    assert len(data.train) == 108 and data.train[0].negative is not None
    result = TextTrainer(cfg, progress=False).fit()
    # 6 test documents, fewer than eval_k=10: the metric keeps its name instead of failing
    assert set(result.test["48"]) == {"map@10", "r@10", "top1", "mrr"}
    assert json.loads((tmp_path / "run/results.json").read_text())["train_pairs"] == 108
    assert (tmp_path / "run/model/config.json").exists()


def test_pairs_retrieval_set_groups_documents_per_query(tmp_path):
    frame = pd.DataFrame({"query": ["a", "a", "b", "c"] * 5, "document": [f"d{i}" for i in range(20)]})
    frame.to_csv(tmp_path / "p.csv", index=False)
    data = load_pairs(tmp_path / "p.csv", val_fraction=0.2, test_fraction=0.2)
    queries, corpus, relevant = data.retrieval_set("train")
    assert len(corpus) == 12 and sum(len(r) for r in relevant) == 12 and set(queries) <= {"a", "b", "c"}
    owner = {p.document: p.query for p in data.splits["train"]}
    assert all(owner[corpus[j]] == q for q, docs in zip(queries, relevant, strict=True) for j in docs)


def test_pairs_errors_name_the_file_row_and_column(tmp_path):
    path = _write_pairs(tmp_path / "faq.csv", n=30)
    with pytest.raises(CorruptDataError, match="no column 'query'"):
        load_pairs(path)
    frame = pd.read_csv(path)
    frame.loc[4, "answer"] = None
    frame.to_csv(path, index=False)
    with pytest.raises(CorruptDataError, match=r"faq.csv: row 5, column 'answer': empty"):
        load_pairs(path, "question", "answer")
    with pytest.raises(CorruptDataError, match="too few"):
        load_pairs(_write_pairs(tmp_path / "few.csv", n=8), "question", "answer")
    with pytest.raises(ConfigError, match="needs data.path"):
        parse_config({"data": {"name": "pairs"}})


def test_info_nce_takes_hard_negatives_after_the_positives():
    q, d, neg = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    loss = MatryoshkaLoss(InfoNCELoss(symmetric=True), [4, 8])(q, torch.cat([d, neg]))
    expected = 0
    for m in (4, 8):
        a = nn.functional.normalize(q[:, :m], dim=1)
        b = nn.functional.normalize(torch.cat([d, neg])[:, :m], dim=1)
        scores = 20 * a @ b.T
        labels = torch.arange(4)
        forward = nn.functional.cross_entropy(scores, labels)
        expected = expected + (forward + nn.functional.cross_entropy(scores[:, :4].T, labels)) / 2
    torch.testing.assert_close(loss, expected)


def test_frozen_base_fast_path_trains_in_seconds_and_is_used_like_a_fine_tuned_run(tmp_path):
    from matryoshka.runs import TrainedRun, evaluate_text_run

    path = _write_pairs(tmp_path / "faq.csv", n=200)
    cfg = _config(tmp_path, path)
    cfg.model.frozen_base, cfg.train.adaptor_steps, cfg.train.evaluate_base = True, 60, True
    result = TextTrainer(cfg, progress=False).fit()
    saved = json.loads((tmp_path / "run/results.json").read_text())
    assert saved["frozen_base"] and saved["train_pairs"] == 160
    assert not (tmp_path / "run/adaptor.safetensors").exists()  # the adaptor is inside model/
    assert saved["loss_weights"] == [4.0, 1.0]  # the fast path's default: small_dims, 4 at the smallest dim
    assert set(result.test) == {"48", "384"} and result.base is not None
    run = TrainedRun.load(tmp_path / "run")
    assert run.dim == 384
    # The run encodes through base + adaptor: its own evaluation and mrl eval's agree, and differ from the base.
    again = evaluate_text_run(tmp_path / "run", k=10)
    assert again["per_dim"]["48"] == saved["test"]["48"]
    texts = ["a dog", "money in a bank"]
    adapted = run.encode_texts(texts, dim=48)
    from matryoshka.nn.text_encoder import encode_texts, load_sentence_transformer

    plain = torch.nn.functional.normalize(encode_texts(load_sentence_transformer(), texts)[:, :48], dim=1).numpy()
    assert adapted.shape == (2, 48) and not torch.allclose(torch.from_numpy(adapted), torch.from_numpy(plain))
    from sentence_transformers import SentenceTransformer

    for m in (48, 384):  # the model folder alone, loaded by sentence-transformers, gives the run's embeddings
        alone = SentenceTransformer(str(tmp_path / "run/model"), device="cpu", truncate_dim=m)
        expected = run.encode_texts(texts, dim=m)
        assert np.abs(alone.encode(texts, normalize_embeddings=True) - expected).max() < 1e-5
