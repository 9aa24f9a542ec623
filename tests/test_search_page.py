"""The search page of `mrl serve` (GET /) in a real browser: headless Chromium driven by playwright.

A text index of WordNet's animal glosses (the text run of conftest.py, with the glosses kept as texts): a typed query
fills one column per prefix size with exactly what POST /search returns at that size; an empty query and a query
over the model's cap get one line. An image run's index (no texts kept): a file that is not an image gets the
service's one line, and the page says how to attach texts. Set $MRL_PAGE_SCREENSHOT to a path to keep a screenshot
of the page with hits.
"""

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from test_own_data import make_image_folder

from matryoshka.bench.store import free_port
from matryoshka.data.wordnet import parse_data_line
from matryoshka.index import IndexStore, MatryoshkaIndex
from matryoshka.runs import TrainedRun
from matryoshka.service import create_app
from matryoshka.service.page import page_dims
from matryoshka.train import Trainer, parse_config

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "no Chromium at /usr/bin/chromium (apt-get install chromium; make data installs it)", allow_module_level=True
    )

WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
ANIMALS = "05"  # WordNet's lexicographer file noun.animal
QUERY = "a wild cat of the desert"
K = 10
KEY = "page-test-key"


def _animal_glosses(n: int) -> tuple[list[str], list[str]]:
    """Names and glosses of ``n`` WordNet animals: the cats, then a seeded sample (the first lemma names each)."""
    if not WORDNET_NOUNS.exists():
        pytest.skip("WordNet is not installed (apt-get install wordnet-base; make data installs it)")
    with open(WORDNET_NOUNS, encoding="utf-8") as f:
        synsets = [parse_data_line(line, "noun") for line in f if line[:1] != " " and line.split()[1] == ANIMALS]
    cats = [i for i, synset in enumerate(synsets) if "feline" in synset.definition or "wildcat" in synset.definition]
    rest = np.random.default_rng(0).permutation(len(synsets)).tolist()
    names, glosses = [], []
    for i in [*cats, *rest]:
        if synsets[i].lemmas[0] not in names and len(names) < n:
            names.append(synsets[i].lemmas[0])
            glosses.append(synsets[i].definition)
    return names, glosses


class Served:
    """``create_app`` behind uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        self.app, self.url = app, f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.app.state.store.close()


@pytest.fixture(scope="module")
def texts_server(tmp_path_factory, text_run):
    """The glosses added by text through the service (embedded by its run, and kept), then compacted."""
    names, glosses = _animal_glosses(120)
    folder = tmp_path_factory.mktemp("page") / "animals"
    IndexStore.create(folder, dim=384, shortlist_dims=[16]).close()
    served = Served(create_app(folder, api_key=KEY, model_path=text_run))
    body, headers = {"texts": glosses, "ids": names}, {"X-API-Key": KEY}
    added = httpx.post(f"{served.url}/vectors", json=body, headers=headers, timeout=300)  # a busy machine: seconds
    assert added.status_code == 200, added.text
    served.app.state.store.compact()
    httpx.post(f"{served.url}/embed", json={"texts": ["a first query"]}, timeout=60)  # the model's first call is slow
    yield served
    served.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    page.close()
    # No script error, and nothing the Content-Security-Policy refused (a 4xx answer is logged too: not an error here).
    assert not [e for e in errors if not e.startswith("Failed to load resource")], errors


def _columns(page) -> dict[int, dict[str, list]]:
    """Each column's dim -> its hits' ids and texts, as the page shows them."""
    return page.eval_on_selector_all(
        ".column",
        """boxes => Object.fromEntries(boxes.map(box => [box.dataset.dim, {
            ids: [...box.querySelectorAll("li")].map(li => li.dataset.id),
            texts: [...box.querySelectorAll("li .doc")].map(doc => doc.textContent),
            latency: box.querySelector(".latency").textContent,
        }]))""",
    )


def test_a_typed_query_fills_a_column_per_prefix_size_with_what_search_returns(texts_server, page):
    page.goto(texts_server.url)
    assert page.input_value("#dims") == "16,64,384" and page_dims(384, [16]) == [16, 64, 384]
    assert page.is_hidden("#hint") and page.is_hidden("#drop")  # the index keeps texts; a text run takes no images
    page.locator("#query").press_sequentially(QUERY, delay=15)  # searched as it is typed, once the typing pauses
    page.wait_for_selector(f'#columns[data-query="{QUERY}"]', timeout=5000)
    answered = int(page.get_attribute("#columns", "data-answered-ms"))  # the page's clock: from the last key
    assert 200 <= answered < 1000, f"the page answered {answered} ms after the last key (200 of them: the pause)"
    assert f"every column answered {answered} ms after the last input" in page.text_content("#status")
    shown = _columns(page)
    assert sorted(int(m) for m in shown) == [16, 64, 384]
    for m, column in shown.items():
        body = {"texts": [QUERY], "k": K, "plan": f"funnel:{m}x{K}", "exact": True, "return_text": True}
        expected = httpx.post(f"{texts_server.url}/search", json=body, timeout=60).json()
        assert column["ids"] == expected["ids"][0] and column["texts"] == expected["texts"][0], m
        assert "ms on the server" in column["latency"] and "round trip" in column["latency"]
    assert shown["16"]["ids"] != shown["384"]["ids"]  # the prefix sizes really were searched apart
    assert "sand cat" in shown["384"]["ids"][:3]  # "a desert wildcat"
    if os.environ.get("MRL_PAGE_SCREENSHOT"):
        page.screenshot(path=os.environ["MRL_PAGE_SCREENSHOT"])


def test_empty_and_overlong_queries_get_one_line_on_the_page_and_from_the_service(texts_server, page):
    page.goto(texts_server.url)
    page.press("#query", "Enter")
    assert page.text_content("#status") == "the query is empty: type some text to search for"
    assert "error" in page.get_attribute("#status", "class")
    refused = httpx.post(f"{texts_server.url}/search", json={"texts": ["  "], "k": K}, timeout=60)
    assert (
        refused.status_code == 422
        and refused.json()["detail"] == "texts[0] is empty or blank: there is nothing to embed"
    )
    page.fill("#query", "word " * 600)  # 3,000 characters: over the model's cap, the service's 413
    page.press("#query", "Enter")
    sync_api.expect(page.locator("#status")).to_contain_text("at most")  # no eval: the page's policy forbids it
    line = page.text_content("#status")
    assert line.startswith("texts[0] has 3,000 characters; each text may have at most 2,048"), line
    page.fill("#query", "lion")
    page.fill("#dims", "16,999")
    page.press("#query", "Enter")
    assert page.text_content("#status") == "prefix sizes must be whole numbers in [1, 384], e.g. 16,64,384"


def test_an_image_run_refuses_a_file_that_is_no_image_and_the_page_says_how_to_keep_texts(tmp_path, page):
    pictures = make_image_folder(tmp_path / "pics", per_class=4)
    config = {
        "data": {"name": "imagefolder", "path": str(pictures), "image_size": 12},
        "model": {"backbone": "cnn", "embed_dim": 16, "width": 8, "min_dim": 4},
        "train": {"epochs": 1, "batch_size": 8, "out_dir": str(tmp_path / "run")},
    }
    Trainer(parse_config(config), progress=False).fit()
    run = TrainedRun.load(tmp_path / "run")
    z, names = run.encode_path(pictures)
    MatryoshkaIndex.build(z, names, shortlist_dims=[4]).save(tmp_path / "ix")
    served = Served(create_app(tmp_path / "ix", model_path=tmp_path / "run"))
    try:
        page.goto(served.url)
        assert page.is_hidden("#text-box") and "Images of the hits are not shown" in page.text_content("#status")
        hint = page.text_content("#hint")
        assert f"mrl index build --embeddings EMBEDDINGS.npy --texts TEXTS.txt --out {tmp_path / 'ix'} --force" in hint
        (tmp_path / "notes.txt").write_text("not a picture")
        page.set_input_files("#file", str(tmp_path / "notes.txt"))
        page.wait_for_selector("#status.error")
        line = page.text_content("#status")
        not_a_picture = {"images": ["bm90IGEgcGljdHVyZQ=="]}  # base64 of the file's bytes
        expected = httpx.post(f"{served.url}/embed", json=not_a_picture, timeout=60).json()["detail"]
        assert line == expected == "cannot read image 0: not an image file (PNG, JPEG, BMP, WebP, ...)", line
        page.set_input_files("#file", names[0])  # a real picture finds itself first at every prefix size
        page.wait_for_selector(f'#columns[data-query="{Path(names[0]).name}"]', timeout=5000)
        assert all(column["ids"][0] == names[0] and column["texts"] == [] for column in _columns(page).values())
    finally:
        served.close()


def test_a_rotated_index_shows_its_rotated_prefixes_scored_at_the_full_dim(texts_server, text_run, tmp_path, page):
    """An index built with rotated prefixes (mrl index build's default may choose them) holds its prefixes only at
    its shortlist dims, in the corpus basis: the page's columns start at those dims and fill without a refusal."""
    from matryoshka.index.basis import fit_basis

    served = texts_server.app.state.store
    ids = served.index.arrays().ids.tolist()
    vectors = served.index.vectors(np.arange(len(ids)))
    folder = tmp_path / "rotated"
    rotated = MatryoshkaIndex(384, shortlist_dims=[16]).with_basis(fit_basis(vectors))
    rotated.add(vectors, ids=ids, texts=served.texts(ids))
    rotated.save(folder)
    server = Served(create_app(folder, model_path=text_run))
    try:
        page.goto(server.url)
        assert page.input_value("#dims") == "16,384"
        page.locator("#query").press_sequentially(QUERY, delay=15)
        page.wait_for_selector(f'#columns[data-query="{QUERY}"]', timeout=5000)
        shown = _columns(page)
        body = {"texts": [QUERY], "k": K, "plan": f"funnel:16x{K},384x{K}", "exact": True, "return_text": True}
        expected = httpx.post(f"{server.url}/search", json=body, timeout=60).json()
        assert shown["16"]["ids"] == expected["ids"][0] and "ms on the server" in shown["16"]["latency"]
        assert "coordinates in the corpus basis" in page.text_content('.column[data-dim="16"] .how')
    finally:
        server.close()
