"""The SVD-initialised projection of the text recipe (``model.projection: svd``): it starts as a rotation (every
full-dim cosine of the base unchanged, most energy in the first coordinates), trains with the encoder, and the
saved folder gives the same vectors through sentence-transformers alone at every prefix."""

import numpy as np
import pytest

from matryoshka.train import ConfigError, parse_config
from matryoshka.train.text_trainer import TextTrainer

pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")


def _config(tmp_path, **model):
    return parse_config(
        {
            "data": {"name": "wordnet", "train_size": 128, "val_size": 40, "test_size": 60},
            "model": {"min_dim": 24, **model},
            "train": {"batch_size": 32, "evaluate_base": False, "out_dir": str(tmp_path / "run")},
        }
    )


def test_the_projection_starts_as_a_rotation_and_round_trips_through_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    trainer = TextTrainer(_config(tmp_path, projection="svd"), progress=False)
    texts = [p.query for p in trainer.pairs[:40]] + [p.document for p in trainer.pairs[:40]]
    trainer.build()
    names = [type(module).__name__ for module in trainer.model]
    assert names[-3:] == ["Normalize", "Dense", "Normalize"]
    rotated = trainer.model.encode(texts, convert_to_numpy=True)
    base = SentenceTransformer(modules=list(trainer.model)[:-2]).encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(rotated @ rotated.T, base @ base.T, atol=1e-5)  # a rotation: cosines unchanged
    energy = (rotated**2).mean(0)  # the SVD order: the first coordinates carry the most
    assert energy[:48].sum() > energy[48:96].sum() > energy[-48:].sum()

    trainer = TextTrainer(_config(tmp_path, projection="svd"), progress=False)
    result = trainer.fit()
    trained = trainer.model.encode(texts, convert_to_numpy=True)
    for m in (24, 96, 384):
        loaded = SentenceTransformer(str(result.model_path), truncate_dim=m)
        assert [type(module).__name__ for module in loaded][-2:] == ["Dense", "Normalize"]
        np.testing.assert_allclose(loaded.encode(texts, convert_to_numpy=True), trained[:, :m], atol=1e-5)


def test_projection_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="did you mean svd"):
        _config(tmp_path, projection="svdd")
    with pytest.raises(ConfigError, match="projection: svd goes with full fine-tuning"):
        _config(tmp_path, projection="svd", frozen_base=True)
    assert _config(tmp_path).model.resolved_projection() == "svd"  # the default recipe of full fine-tuning
    assert _config(tmp_path, frozen_base=True).model.resolved_projection() == "none"
    assert _config(tmp_path, projection="none").model.resolved_projection() == "none"
