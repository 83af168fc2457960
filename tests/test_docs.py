"""The documentation site: built from the notebooks (`tools/docs.py`, as `make docs` does), served on 127.0.0.1 and
opened page by page in headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium).

The build is checked without a browser too (pages, order, API anchors, search index), so a machine without Chromium
still tests it; the browser tests skip there, with the reason. Screenshots of the home page and of the first numbered
notebook are saved under the test's temporary folder (or `$DRSN_TVL_DOCS_SHOTS`), and their paths are printed.
"""
import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
                "--disable-dev-shm-usage", "--window-size=1400,1000", "--hide-scrollbars"]


def _docs_tool():
    spec = importlib.util.spec_from_file_location("drsn_tvl_docs_tool", ROOT / "tools" / "docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _nb_title(nb: Path) -> str:
    "The `# Title` of a notebook's first markdown cell (nbdev's convention for the page title)."
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            m = re.match(r"\s*#\s+(.+)", "".join(cell["source"]))
            if m: return m.group(1).strip()
    raise AssertionError(f"{nb.name} has no `# Title` markdown cell")


# The pipeline order of the notebooks, and the page nbdev derives from each (the number prefix dropped).
LAYOUT = {"00_core": "core.html", "01_data": "data.html", "02_clahe": "clahe.html", "03_wgan": "wgan.html",
          "04_victim": "victim.html", "05_attacks": "attacks.html", "06_features": "features.html",
          "07_drsn_tvl": "drsn_tvl.html", "08_baselines": "baselines.html", "09_experiments": "experiments.html",
          "10_results": "results.html", "11_cli": "cli.html"}
OLD_NAMES = ("00_data", "01_clahe", "02_wgan", "03_attacks", "04_features", "05_drsn_tvl", "06_experiments",
             "07_baselines", "08_results")


def numbered_notebooks():
    "Whatever numbered notebooks exist now, in order: the site must show exactly these."
    return sorted(NBS.glob("[0-9][0-9]_*.ipynb"))


def _public_api():
    "{page: {anchor, ...}} for the top-level exported names in nbdev's index `_modidx`."
    from drsn_tvl._modidx import d
    out = {}
    for mod, syms in d["syms"].items():
        for name, (url, _) in syms.items():
            short = name[len(mod) + 1:]
            if "." in short or short.startswith("_"): continue
            page, _, anchor = url.partition("#")
            out.setdefault(page, set()).add(anchor)
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # the browser drops connections when it navigates away
        import sys
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "Build the site into a temporary folder (the smalldocs engine: what builds here and offline) and serve it."
    out = tmp_path_factory.mktemp("docs") / "site"
    t0 = time.time()
    _docs_tool().build(out, engine="smalldocs", quiet=True)
    print(f"\ndocs built in {time.time() - t0:.1f} s into {out}")
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield out, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _pages(out: Path):
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html") if "site_libs" not in p.parts)


def _page_of(nb: Path) -> str:
    "nbdev's page name for a notebook: the number prefix dropped (`01_data.ipynb` -> `data.html`)."
    return re.sub(r"^\d+_", "", nb.stem) + ".html"


# ---------------------------------------------------------------- the build, without a browser

def test_notebook_layout():
    "The notebooks are the pipeline, in order: 00_core ... 11_cli (plus index), each with its nbdev page name."
    assert [nb.stem for nb in numbered_notebooks()] == list(LAYOUT)
    assert [_page_of(nb) for nb in numbered_notebooks()] == list(LAYOUT.values())
    assert (NBS / "index.ipynb").exists()


def test_site_has_one_page_per_notebook(site):
    out, _ = site
    pages = _pages(out)
    assert "index.html" in pages
    nbs = numbered_notebooks()
    assert nbs, "no numbered notebooks in nbs/"
    for nb in nbs: assert _page_of(nb) in pages, f"{nb.name}: no page {_page_of(nb)} in {pages}"
    assert set(pages) - {"404.html"} == {"index.html", *LAYOUT.values()}, pages     # exactly these pages
    bad = [p for p in pages if re.search(r"\.(ya?ml|css|toml|ini|py)\.html$|^(nbdev|sidebar|styles)\.html$", p)]
    assert not bad, f"config files rendered as pages: {bad}"
    assert (out / ".nojekyll").exists() and (out / "site_libs").is_dir()


def _shown_runs():
    "The runs the Results page shows: every results/<run>/ with a results.json, an older-code run (no `feature_sources` "
    "parameter) dropped when a current-code run of the same dataset exists."
    runs = {}
    for d in sorted((ROOT / "results").iterdir()):
        if d.name == "previous" or not (d / "results.json").is_file(): continue
        p = json.loads((d / "results.json").read_text())["params"]
        runs[d.name] = ((p.get("ds_kwargs") or {}).get("flag") or p["dataset"], "feature_sources" in p)
    new = {k for k, cur in runs.values() if cur}
    return [n for n, (k, cur) in runs.items() if cur or k not in new]


def test_results_page_prose_from_the_csvs(site):
    "The Results page's sentences are rendered from results/<run>/*.csv when the notebook runs: every run collected in "
    "results/ is on the page with its PGD success (so a page not re-executed after collecting fails here), the paper's "
    "numbers beside ours, and it names the notebooks by their new names."
    out, _ = site
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (out / LAYOUT["10_results"]).read_text()))
    import pandas as pd
    runs = _shown_runs()
    assert runs, "no run in results/"
    for run in runs:
        t = pd.read_csv(ROOT / "results" / run / "attack_stats.csv").set_index(["split", "attack"])
        pgd = f"{100 * t.loc[('test', 'pgd'), 'success_rate']:.0f}"
        assert run in text, f"results/{run} is not on the Results page: re-execute nbs/10_results.ipynb"
        assert f"flips {pgd} % of its correct test predictions" in text, f"{run}: PGD success {pgd} % not on the page"
    for heading in ("What changed", "Summary across datasets", "The issue", "How these numbers were made"):
        assert heading in text, heading
    assert "98.73 % for DRSN-TVL" in text or "98.45 % for DRSN-TVL" in text
    assert "08_baselines" in text and not [n for n in OLD_NAMES if n in text]


MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|tmp|root|home)/")


def test_no_machine_paths_in_results_and_page():
    "results/ and the Results notebook are published: no file names a path of the machine that made them."
    files = [f for f in (ROOT / "results").rglob("*") if f.suffix in (".md", ".csv", ".json", ".txt")]
    files += [NBS / "10_results.ipynb"]
    bad = [f"{f.relative_to(ROOT)}: {m.group(0)}" for f in files for m in [MACHINE_PATH.search(f.read_text(errors="replace"))] if m]
    assert not bad, bad


def test_collect_results_archives_older_runs(tmp_path):
    "tools/collect_results.py copies a run's small files, keeps an older-code run's record in previous/, and refuses machine paths."
    spec = importlib.util.spec_from_file_location("collect_results", ROOT / "tools" / "collect_results.py")
    cr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cr)
    dest, run = tmp_path / "results", tmp_path / "out" / "x-cpu"
    (dest / "x-cpu").mkdir(parents=True); run.mkdir(parents=True)
    (dest / "x-cpu" / "results.json").write_text(json.dumps({"params": {"dataset": "x"}}))      # older code: no feature_sources
    (run / "results.json").write_text(json.dumps({"params": {"dataset": "x", "feature_sources": ["victim"]}}))
    (run / "table_6_7.csv").write_text("detector,accuracy\nlogreg,90\n")
    (run / "detector.pt").write_bytes(b"x"); (run / "paper_table_6.csv").write_text("")
    cr.collect(run, dest)
    assert sorted(f.name for f in (dest / "x-cpu").iterdir()) == ["results.json", "table_6_7.csv"]
    assert "feature_sources" not in (dest / "previous" / "x-cpu" / "results.json").read_text()
    (run / "report.md").write_text("cache in " + "/" + "tmp/cache\n")
    with pytest.raises(SystemExit, match="machine paths"): cr.collect(run, dest)


def test_api_reference_anchors(site):
    "Every top-level exported name has its show_doc heading at the anchor nbdev's doc links use."
    out, _ = site
    api = _public_api()
    assert api, "drsn_tvl._modidx lists no public names"
    for page, anchors in api.items():
        assert (out / page).exists(), f"drsn_tvl._modidx documents {sorted(anchors)[:5]} on {page}, which the site lacks"
        text = (out / page).read_text()
        ids = set(re.findall(r'\bid="([^"]+)"', text))
        missing = sorted(anchors - ids)
        assert not missing, f"{page}: no API heading for {missing}"


def test_internal_links_resolve(site):
    "Without a browser: every relative href/src of every page names a file of the site, and its #anchor exists."
    out, _ = site
    ids = {p: set(re.findall(r'\bid="([^"]+)"', (out / p).read_text())) for p in _pages(out)}
    bad = []
    for page in ids:
        for ref in re.findall(r'\b(?:href|src)="([^"]+)"', (out / page).read_text()):
            if re.match(r"[a-z][a-z0-9+.-]*:|//|#$", ref): continue  # external, data: and javascript: URLs
            path, _, frag = ref.partition("#")
            target = (out / page).parent.joinpath(path.partition("?")[0]).resolve() if path else (out / page).resolve()
            rel = target.relative_to(out.resolve()).as_posix() if target.is_relative_to(out.resolve()) else None
            if rel is None or not target.is_file(): bad.append(f"{page}: {ref}")
            elif frag and rel in ids and frag not in ids[rel]: bad.append(f"{page}: {ref} (no such anchor)")
    assert not bad, "\n".join(bad)


def test_search_index_covers_every_page(site):
    out, _ = site
    entries = json.loads((out / "search.json").read_text())
    hrefs = {e["href"].partition("#")[0] for e in entries}
    assert set(_pages(out)) - {"404.html"} <= hrefs


def test_no_cdn_assets(site):
    "The site is self-contained: no page loads a script, a stylesheet or a font from another host."
    out, _ = site
    remote = re.compile(r'\b(?:src|href)="((?:https?:)?//[^"]+)"')
    for page in _pages(out):
        text = (out / page).read_text()
        tags = re.findall(r"<(?:script|img|iframe)\b[^>]*>", text)
        tags += [t for t in re.findall(r"<link\b[^>]*>", text) if not re.search(r'rel="(?:canonical|alternate)"', t)]
        ext = [m.group(1) for t in tags for m in [remote.search(t)] if m]
        assert not ext, f"{page} loads {ext}"
    for css in out.rglob("*.css"):
        ext = re.findall(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)", css.read_text())
        assert not ext, f"{css.relative_to(out)} loads {ext}"


def test_build_engine_errors(tmp_path):
    tool = _docs_tool()
    with pytest.raises(tool.DocsError, match="unknown engine 'sphinx'"): tool.build(tmp_path / "x", engine="sphinx")
    if not tool.quarto_available():
        with pytest.raises(tool.DocsError, match="no `quarto` on PATH"): tool.build(tmp_path / "x", engine="quarto")
    assert not (tmp_path / "x").exists()


def test_mathml():
    tool = _docs_tool()
    html = tool.mathml(r'<p>a <span class="math inline">\(\tau = \alpha \cdot a\)</span></p>'
                       r'<span class="math display">\[y = \operatorname{sign}(x)\]</span>')
    assert html.count("<math") == 2 and 'display="block"' in html and "\\(" not in html
    warned = []
    bad = tool.mathml(r'<span class="math inline">\(\frac{1}{\)</span>', warned.append)
    assert warned and "<code" in bad


# ---------------------------------------------------------------- the browser

@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium not available (apt-get install chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in CHROME_FLAGS: opts.add_argument(f)
    import tempfile
    profile = tempfile.mkdtemp(prefix="drsn-tvl-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = Path(os.environ.get("DRSN_TVL_DOCS_SHOTS") or tmp_path_factory.mktemp("docs-screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


_COLLECT = """
const abs = (u) => u ? new URL(u, document.baseURI).href : null;
return {
  title: document.title,
  h1: [...document.querySelectorAll('main h1, h1.title, #title-block-header h1')].map(h => h.textContent.trim()),
  links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')).filter(h => !/^(javascript:|mailto:)/.test(h) && h !== '#').map(abs),
  res: [...document.querySelectorAll('img[src], script[src], link[href], source[src], iframe[src]')]
         .map(e => abs(e.getAttribute('src') || e.getAttribute('href'))),
  broken_imgs: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => (i.getAttribute('src') || '').slice(0, 80)),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  sidebar: [...document.querySelectorAll('#quarto-sidebar a.sidebar-link')].map(a => [abs(a.getAttribute('href')), a.textContent.trim()]),
};
"""


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.status
    except urllib.error.HTTPError as e: return e.code


def _wait(driver, cond, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v: return v
        time.sleep(0.05)
    return cond()


def test_every_page_in_chromium(browser, site):
    out, base = site
    pages = _pages(out)
    seen, checked, problems = {}, {}, []
    browser.get_log("browser")  # drop anything from before
    for page in pages:
        url = urljoin(base, page)
        assert _status(url) == 200, f"{page}: HTTP {_status(url)}"
        browser.get(url)
        _wait(browser, lambda: browser.execute_script("return document.readyState") == "complete")
        info = browser.execute_script(_COLLECT)
        seen[url] = info
        if not info["title"].strip(): problems.append(f"{page}: empty <title>")
        if not any(info["h1"]): problems.append(f"{page}: no main heading <h1>")
        if info["broken_imgs"]: problems.append(f"{page}: images that do not display: {info['broken_imgs']}")
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        if errors: problems.append(f"{page}: console errors: {errors}")
        for u in info["links"] + info["res"]:
            if not u or not u.startswith(base): continue  # external links are not fetched: the site must work offline
            target = urldefrag(u).url
            if target not in checked: checked[target] = _status(target)
            if checked[target] != 200: problems.append(f"{page}: broken internal link {u} (HTTP {checked[target]})")
    # fragments: a link to page#anchor needs an element with that id on that page
    for page_url, info in seen.items():
        for u in info["links"]:
            if not u or not u.startswith(base): continue
            target, frag = urldefrag(u)
            if frag and target in seen and frag not in seen[target]["ids"]:
                problems.append(f"{page_url[len(base):]}: link to missing anchor {u[len(base):]}")
    assert not problems, "\n".join(problems)
    assert len(checked) > len(pages)  # the assets were checked too


def test_sidebar_lists_notebooks_in_order(browser, site):
    out, base = site
    browser.get(urljoin(base, "index.html"))
    side = browser.execute_script(_COLLECT)["sidebar"]
    hrefs = [urlparse(h).path.lstrip("/") for h, _ in side]
    expected = ["index.html"] + [_page_of(nb) for nb in numbered_notebooks()]
    numbered = [h for h in hrefs if h in expected]
    assert numbered == expected, f"sidebar order {hrefs}, expected {expected} first"
    titles = dict((urlparse(h).path.lstrip("/"), t) for h, t in side)
    for nb in numbered_notebooks():
        assert titles[_page_of(nb)] == _nb_title(nb), f"{nb.name}: sidebar says {titles[_page_of(nb)]!r}"
    assert not [h for h in hrefs if re.search(r"\.(ya?ml|css|toml|ini)$", h)], hrefs


def test_search_finds_an_api_name(browser, site):
    "Type an exported name into the search box: a result links to the page that documents it, and that page opens."
    from selenium.webdriver.common.by import By
    out, base = site
    page, anchors = sorted(_public_api().items())[0]
    name = sorted(anchors)[0]
    browser.get(urljoin(base, "index.html"))
    box = browser.find_element(By.CSS_SELECTOR, "#quarto-search input")
    box.send_keys(name)
    hits = _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".smalldocs-search-results a.search-result"))
    assert hits, f"search for {name!r} found nothing"
    target = next((h for h in hits if urlparse(h.get_attribute("href")).path.endswith("/" + page)), None)
    assert target is not None, f"no result for {name!r} on {page}: {[h.get_attribute('href') for h in hits]}"
    target.click()
    assert _wait(browser, lambda: urlparse(browser.current_url).path.endswith("/" + page))
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_screenshots(browser, site, shots, capsys):
    out, base = site
    first = numbered_notebooks()[0]
    saved = []
    for page, name in (("index.html", "home.png"), (_page_of(first), f"{first.stem}.png")):
        browser.get(urljoin(base, page))
        _wait(browser, lambda: browser.execute_script("return document.readyState") == "complete")
        path = shots / name
        assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000
        saved.append(path)
    with capsys.disabled():
        print("\ndocs screenshots: " + " ".join(map(str, saved)))
