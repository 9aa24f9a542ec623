"""Text Matryoshka embeddings: WordNet pairs, MRR, per-dim text retrieval, the text trainer and its CLI."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from matryoshka.cli import app
from matryoshka.data import DataNotFoundError
from matryoshka.data.wordnet import load_wordnet, parse_data_line, read_synsets
from matryoshka.evaluate.metrics import reciprocal_ranks
from matryoshka.evaluate.text import prefix_retrieval_metrics
from matryoshka.nesting import NestingError, halving_nesting
from matryoshka.nn.distillation import PrefixDistillationLoss
from matryoshka.train import ConfigError, parse_config
from matryoshka.train.config import TextExperimentConfig
from matryoshka.train.text_trainer import TextTrainer

NOUN = (
    "00217773 04 n 05 laying_waste 0 ruin 0 ruining 0 ruination 0 wrecking 0 007 @ 00217014 n 0000 + 01566203 v 0502 "
    "| destruction achieved by causing something to be wrecked or ruined  \n"
)
ADJ = (
    '00021110 00 s 02 complaisant 0 galore(ip) 0 003 & 00020787 a 0000 | showing a cheerful willingness; "to close '
    'one\'s eyes"; "the obliging waiter"  \n'
)


def test_parse_data_line_reads_lemmas_definition_and_examples():
    s = parse_data_line(NOUN, "noun")
    assert s.id == "n00217773"
    assert s.lemmas == ("laying waste", "ruin", "ruining", "ruination", "wrecking")
    assert s.definition == "destruction achieved by causing something to be wrecked or ruined"
    assert s.examples == ()
    a = parse_data_line(ADJ, "adj")
    assert a.lemmas == ("complaisant", "galore")  # syntactic marker dropped
    assert a.definition == "showing a cheerful willingness"
    assert a.examples == ("to close one's eyes", "the obliging waiter")
    assert parse_data_line("  1 This software and database is being provided\n", "noun") is None


def test_missing_wordnet_names_the_package(tmp_path):
    with pytest.raises(DataNotFoundError, match="wordnet-base"):
        read_synsets(tmp_path)


def test_splits_are_disjoint_by_synset_and_relevance_is_by_lemma(tmp_path):
    for pos, line in (("noun", NOUN), ("verb", ""), ("adj", ADJ), ("adv", "")):
        (tmp_path / f"data.{pos}").write_text("  licence header\n" + line)
    wn = load_wordnet(tmp_path, val_size=0, test_size=1, seed=0)
    assert len(wn.train_synsets) == 1 and len(wn.test_synsets) == 1
    assert wn.train_synsets[0].id != wn.test_synsets[0].id
    queries, corpus, relevant = wn.retrieval_set("test")
    assert corpus == [wn.test_synsets[0].definition]
    assert sorted(queries) == sorted(wn.test_synsets[0].lemmas) and relevant == [[0]] * len(queries)
    pair = wn.train[0]
    assert pair.document == wn.train_synsets[0].definition and pair.query in wn.train_synsets[0].lemmas
    with pytest.raises(ValueError, match="leave no training"):
        load_wordnet(tmp_path, val_size=0, test_size=2)


def test_real_wordnet_split_sizes():
    wn = load_wordnet(val_size=100, test_size=500, train_size=1000, seed=3)
    assert (len(wn.train), len(wn.val_synsets), len(wn.test_synsets)) == (1000, 100, 500)
    ids = [s.id for s in wn.train_synsets + wn.val_synsets + wn.test_synsets]
    assert len(set(ids)) == len(ids)
    assert load_wordnet(val_size=100, test_size=500, train_size=1000, seed=3).train == wn.train


def test_reciprocal_ranks_by_hand():
    db = torch.eye(4)
    q = torch.tensor([[0.9, 0.5, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    # query 0 ranks items 0,1,2,3; relevant {1} -> rank 2. query 1 ranks 3,2,1,0; relevant {0, 2} -> best is 2, rank 2
    rr = reciprocal_ranks(q, db, [[1], [0, 2]])
    assert rr.tolist() == [0.5, 0.5]
    # ties count against the query: item 1 and item 0 score the same
    assert reciprocal_ranks(torch.tensor([[1.0, 1.0, 0.0, 0.0]]), db, [[1]]).tolist() == [0.5]
    with pytest.raises(ValueError, match="at least one relevant"):
        reciprocal_ranks(q, db, [[1], []])


def test_prefix_retrieval_metrics_uses_prefixes():
    # The first coordinate separates nothing; the second identifies each document.
    corpus = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    queries = torch.tensor([[1.0, 0.9], [1.0, -0.9]])
    out = prefix_retrieval_metrics(queries, corpus, [[0], [1]], dims=[1, 2], k=1)
    assert out[2]["map@1"] == 1.0 and out[2]["mrr"] == 1.0
    assert out[1]["mrr"] == 0.5  # a tie at 1 dim ranks pessimistically


def test_halving_nesting():
    assert halving_nesting(384, 12) == [12, 24, 48, 96, 192, 384]
    assert halving_nesting(768, 64) == [96, 192, 384, 768]
    assert halving_nesting(50, 8) == [12, 25, 50]
    with pytest.raises(NestingError):
        halving_nesting(64, 128)


def test_text_config_is_chosen_by_data_name():
    cfg = parse_config({"data": {"name": "wordnet"}, "model": {"min_dim": 24}})
    assert isinstance(cfg, TextExperimentConfig) and cfg.model.base == "all-MiniLM-L6-v2"
    with pytest.raises(ConfigError, match="backbone: unknown key"):
        parse_config({"data": {"name": "wordnet"}, "model": {"backbone": "cnn"}})


def test_text_loss_weights_default_to_small_dims_on_the_fast_path_only():
    def weights(**model):
        return parse_config({"data": {"name": "wordnet"}, "model": model}).model.resolved_loss_weights(dims)

    dims = [12, 24, 48, 96, 192, 384]
    assert weights(frozen_base=True) == [4, 2, 1, 1, 1, 1]  # 4 at the smallest dim, halving per doubling
    assert weights() is None  # full fine-tuning: equal, as before
    assert weights(loss_weights="small_dims") == [4, 2, 1, 1, 1, 1]
    assert weights(frozen_base=True, loss_weights="uniform") is None
    assert weights(loss_weights=[3, 1, 1, 1, 1, 1]) == [3, 1, 1, 1, 1, 1]
    assert weights(frozen_base=True, matryoshka=False) is None
    with pytest.raises(NestingError, match=r"model.loss_weights: got 2 weights for 6 nesting dims"):
        weights(loss_weights=[2, 1])
    with pytest.raises(ConfigError, match="loss_weights"):
        parse_config({"data": {"name": "wordnet"}, "model": {"loss_weights": "big_dims"}})


def _tiny(tmp_path, name="run", model=None, **train):
    return parse_config(
        {
            "data": {"name": "wordnet", "train_size": 128, "val_size": 40, "test_size": 60},
            "model": {"nesting": [48, 384], "max_seq_length": 32, **(model or {})},
            "train": {
                "batch_size": 32,
                "epochs": 2,
                "checkpoint_every": 2,
                "evaluate_base": False,
                "out_dir": str(tmp_path / name),
                **train,
            },
        }
    )


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    straight = TextTrainer(_tiny(tmp_path, "straight"), progress=False).fit()
    calls = {"n": 0}
    original = TextTrainer.train_step

    def crash_on_fifth(self, idx):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, idx)

    monkeypatch.setattr(TextTrainer, "train_step", crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        TextTrainer(_tiny(tmp_path, "crashed"), progress=False).fit()
    monkeypatch.setattr(TextTrainer, "train_step", original)
    assert (tmp_path / "crashed/checkpoints/latest").read_text() == "step-00000004"
    resumed = TextTrainer(_tiny(tmp_path, "crashed"), progress=False).fit()
    a = load_file(str(tmp_path / "straight/model/model.safetensors"))
    b = load_file(str(tmp_path / "crashed/model/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test == straight.test and len(resumed.history) == 2


def test_prefix_distillation_joins_the_loss_only_when_asked(tmp_path):
    losses = {}
    for distill in (0.0, 1.0):
        trainer = TextTrainer(_tiny(tmp_path, f"d{distill}", {"distill": distill}, epochs=1), progress=False)
        trainer.build()
        losses[distill] = trainer.train_step(torch.arange(32)).item()
    assert (trainer.distillation is not None) and losses[1.0] > losses[0.0]  # same first batch, same weights
    plain = TextTrainer(_tiny(tmp_path, "p", {"distill": 1.0, "matryoshka": False}), progress=False)
    plain.build()
    assert plain.distillation is None  # a full-dim-only model has no prefixes to distil into
    # ... and Matryoshka-only settings do not make it another run: it resumes whatever they are
    other = TextTrainer(_tiny(tmp_path, "p", {"loss_weights": [2, 1], "matryoshka": False}), progress=False)
    assert other.comparable_config() == plain.comparable_config()


def test_the_memory_adds_candidates_to_the_loss_after_the_first_batch(tmp_path):
    trainer = TextTrainer(_tiny(tmp_path, "m", {"memory": 64, "distill": 1.0}), progress=False)
    trainer.build()
    assert trainer.memory is not None and len(trainer.memory) == 0
    trainer.train_step(torch.arange(32))
    assert len(trainer.memory) == 32
    seen = []
    original = PrefixDistillationLoss.forward

    def spy(self, queries, documents):
        seen.append(documents.shape[0])
        return original(self, queries, documents)

    PrefixDistillationLoss.forward = spy
    try:
        trainer.train_step(torch.arange(32, 64))
    finally:
        PrefixDistillationLoss.forward = original
    assert seen == [64] and len(trainer.memory) == 64  # the batch's 32 documents and the 32 remembered


def test_a_run_with_a_memory_resumes_exactly(tmp_path, monkeypatch):
    straight = TextTrainer(_tiny(tmp_path, "straight", {"memory": 48}), progress=False).fit()
    calls = {"n": 0}
    original = TextTrainer.train_step

    def crash_on_fifth(self, idx):
        calls["n"] += 1
        if calls["n"] == 5:  # after 4 of the 8 steps: the memory (48 rows, 32 a step) has wrapped
            raise KeyboardInterrupt
        return original(self, idx)

    monkeypatch.setattr(TextTrainer, "train_step", crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        TextTrainer(_tiny(tmp_path, "crashed", {"memory": 48}), progress=False).fit()
    monkeypatch.setattr(TextTrainer, "train_step", original)
    resumed = TextTrainer(_tiny(tmp_path, "crashed", {"memory": 48}), progress=False).fit()
    a = load_file(str(tmp_path / "straight/model/model.safetensors"))
    b = load_file(str(tmp_path / "crashed/model/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test == straight.test


def test_mrl_train_text_config_saves_a_truncatable_sentence_transformer(tmp_path):
    from sentence_transformers import SentenceTransformer

    config = tmp_path / "wordnet.yaml"
    shutil.copy("configs/wordnet_minilm_quick.yaml", config)
    run = tmp_path / "run"
    args = ["train", "-c", str(config), "--out", str(run), "--no-progress"]
    sets = ["data.train_size=64", "data.val_size=30", "data.test_size=50", "train.batch_size=32", "model.min_dim=48"]
    result = CliRunner().invoke(app, [*args, *[x for s in sets for x in ("--set", s)]])
    assert result.exit_code == 0, result.output
    assert "test mAP@10 per dim (base model -> fine-tuned)" in result.output
    assert f"load it with SentenceTransformer({str(run / 'model')!r}, truncate_dim=m)" in result.output
    results = json.loads((run / "results.json").read_text())
    assert results["nesting"] == [48, 96, 192, 384]
    assert set(results["test"]) == set(results["base"]) == {"48", "96", "192", "384"}
    assert all(0 <= v["map@10"] <= 1 and 0 < v["mrr"] <= 1 for v in results["test"].values())
    model = SentenceTransformer(str(run / "model"), device="cpu", truncate_dim=48)
    z = model.encode(["a dog", "the act of destroying"])
    assert z.shape == (2, 48)
    bad = CliRunner().invoke(app, [*args, "--set", "model.base=/no/such/model"])
    assert bad.exit_code == 2 and "neither 'all-MiniLM-L6-v2' nor a SentenceTransformer folder" in bad.output


def test_mined_negatives_are_hard_and_never_a_positive_of_their_query(tmp_path):
    """`model.mine_negatives`: each training pair gets the document the starting model ranks highest for its query
    among those that are no positive of it and that keep the margin below the positive's cosine; a training step
    then ranks against the batch's documents and their negatives."""
    trainer = TextTrainer(_tiny(tmp_path, "mined", {"mine_negatives": True, "mine_margin": 0.05}), progress=False)
    trainer.build()
    pairs = trainer.pairs
    mined = [p for p in pairs if p.negative is not None]
    assert len(mined) >= 0.9 * len(pairs)
    positives: dict[str, set[str]] = {}
    for p in pairs:
        positives.setdefault(p.query, set()).add(p.document)
    documents = {p.document for p in pairs}
    assert all(p.negative in documents and p.negative not in positives[p.query] for p in mined)
    base = trainer.model
    fields = ("query", "document", "negative")
    q, d, n = (base.encode([getattr(p, f) for p in mined], normalize_embeddings=True) for f in fields)
    positive_cos, negative_cos = (q * d).sum(1), (q * n).sum(1)
    assert (negative_cos <= 0.95 * positive_cos + 1e-4).all()
    # the hardest that keeps the margin: no other allowed document scores higher for the query
    texts = sorted(documents)
    all_docs = base.encode(texts, normalize_embeddings=True)
    for i, p in enumerate(mined[:20]):
        allowed = [j for j, t in enumerate(texts) if t not in positives[p.query]]
        scores = all_docs[allowed] @ q[i]
        best = scores[scores <= 0.95 * positive_cos[i]].max()
        assert negative_cos[i] >= best - 1e-4
    seen = []
    original = trainer._ranking_loss
    trainer._ranking_loss = lambda queries, docs, batch: seen.append(len(docs)) or original(queries, docs, batch)
    batch = torch.arange(32)
    trainer.train_step(batch)
    assert seen == [32 + sum(pairs[i].negative is not None for i in batch.tolist())]


def test_mined_negatives_go_with_full_fine_tuning_and_misspellings_are_refused():
    with pytest.raises(ConfigError, match="mine_negatives goes with full fine-tuning"):
        parse_config({"data": {"name": "wordnet"}, "model": {"mine_negatives": True, "frozen_base": True}})
    with pytest.raises(ConfigError, match="mine_negatives"):
        parse_config({"data": {"name": "wordnet"}, "model": {"mine_negative": True}})
    with pytest.raises(ConfigError, match="mine_margin"):
        parse_config({"data": {"name": "wordnet"}, "model": {"mine_negatives": True, "mine_margin": 1.5}})
