#!/usr/bin/env python
"""Build and serve the documentation site of drsn_tvl, from the notebooks in `nbs/`.

    python tools/docs.py build [--out DIR] [--engine auto|quarto|smalldocs]   # `make docs`
    python tools/docs.py serve [--dir DIR] [--port 4200]                      # `make serve-docs`

`build` uses nbdev's own `nbdev-docs` where the `quarto` binary is on PATH. Elsewhere (Quarto has no offline
installer) it runs the same notebook processing as `nbdev-proc-nbs` (show_doc cells executed, directives applied,
`sidebar.yml` regenerated from whatever notebooks exist, the processed Quarto project written to `_proc/`) and renders
`_proc/` with smalldocs, a pure-Python renderer of Quarto website projects, with three nbdev conventions added:

- pages are written to the `output-file` nbdev gives them (`01_data.ipynb` -> `data.html`, as Quarto does), and
  links to either name resolve;
- maths is rendered to MathML at build time (`html-math-method: mathml` in `_quarto.yml`, which Quarto/pandoc also
  honour), so no page loads a script or a font from a CDN and the site works offline;
- nbdev's doc links, which point at the published site (`site-url`), become relative links into the local site;
- the theme's `@import` of web fonts from Google is dropped (its fallback font stack applies).

The output (default: nbdev's `doc_path`, `_docs/`) is a static folder: serve it with any web server (search reads
`search.json`, which browsers refuse to fetch from `file://`).
"""
import argparse
import contextlib
import functools
import html
import http.server
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]

# smalldocs warnings about Quarto options that only the Quarto engine needs (nbdev writes them); anything else is shown
HARMLESS = ("unknown key format-links", "format commonmark is not built", "format.html.keep-md is ignored",
            "format.html.html-math-method is ignored", "output-file is not read by smalldocs")


@contextlib.contextmanager
def _cwd(path):
    "nbdev reads its configuration from the current directory: run inside the project."
    old = os.getcwd()
    os.chdir(path)
    try: yield
    finally: os.chdir(old)


def quarto_available() -> bool:
    "Is the Quarto binary on PATH?"
    return shutil.which("quarto") is not None


def proc_notebooks(root=ROOT, n_workers=None) -> Path:
    "nbdev's docs preprocessing without the Quarto install step: refresh `nbdev.yml`, write `sidebar.yml`, process into `_proc/`."
    from fastcore.parallel import defaults
    from nbdev.config import get_config
    from nbdev.quarto import _def_file_re, nbdev_sidebar, refresh_quarto_yml
    from nbdev.serve import proc_nbs
    with _cwd(root):
        cfg = get_config()
        refresh_quarto_yml()
        # same globbing as `nbdev-docs`: notebooks, .qmd and .html pages only, never config files such as nbdev.yml
        nbdev_sidebar.__wrapped__(path=cfg.nbs_path, file_glob=None, file_re=_def_file_re)
        try: return Path(proc_nbs(cfg.nbs_path, n_workers=defaults.cpus if n_workers is None else n_workers))
        except Exception as e:
            raise DocsError(f"{e}\n\nnbdev failed while processing the notebooks for the docs. To render show_doc it runs "
                            "the exported cells and EVERY cell that contains an import, out of context (nbdev's "
                            "'Found cells containing imports and other code' warning): put imports in a cell of their "
                            "own, or make such a cell self-contained. `nbdev-docs` under Quarto fails the same way.") from e


class DocsError(RuntimeError):
    "The docs could not be built; the message says why and what to change."


def tex_to_mathml(tex: str, display: bool) -> str:
    "TeX to MathML (which browsers render natively), via latex2mathml."
    from latex2mathml.converter import convert
    return convert(tex, display="block" if display else "inline")


_MATH = re.compile(r'<span class="math (inline|display)">\\[(\[](.*?)\\[)\]]</span>', re.S)


def mathml(page_html: str, warn=print) -> str:
    "Replace smalldocs's TeX spans (`\\(..\\)`, `\\[..\\]`) by MathML; TeX that does not convert stays as code, with a warning."
    def sub(m):
        kind, tex = m.group(1), html.unescape(m.group(2))
        try: return f'<span class="math {kind}">{tex_to_mathml(tex, kind == "display")}</span>'
        except Exception as e:  # latex2mathml raises many exception types for TeX it does not know
            warn(f"maths not converted ({type(e).__name__}: {e}): {tex}")
            return f'<code class="math {kind}">{html.escape(tex)}</code>'
    return _MATH.sub(sub, page_html)


@functools.cache
def _nbdev_site_class():
    from smalldocs.site import Site, rel

    class NbdevSite(Site):
        "smalldocs' Site, reading nbdev's `output-file`, rendering maths to MathML and localising doc links."

        def read(self, src):
            page = super().read(src)
            out = page.front.get("output-file")
            if isinstance(out, str) and out.endswith(".html") and "/" not in out:
                page.out = src.parent / out
            return page

        def find_page(self, target):
            found = super().find_page(target)
            if found is None and self.pages:
                want = target if target.suffix == ".html" else target / "index.html"
                found = next((p for p in self.pages.values() if p.out == want), None)
            return found

        def render_page(self, page):
            super().render_page(page)
            if page.env.get("math"):
                page.html = mathml(page.html, lambda w: self.warn(f"{page.src}: {w}"))
                page.env["math"] = False  # no KaTeX from a CDN: the maths is already MathML
            base = str(self.project.website.get("site-url") or "").rstrip("/")
            if base:
                def local(m):
                    path, _, tail = m.group(2).partition("#")
                    target = self.find_page(PurePosixPath(path or "index.html"))
                    if target is None: return m.group(0)
                    return f'{m.group(1)}"{rel(target.out, page)}{"#" + tail if tail else ""}"'
                page.html = re.sub(rf'(href=)"{re.escape(base)}/([^"]*)"', local, page.html)

    return NbdevSite


def render_smalldocs(proj_dir: Path, out: Path, quiet=True) -> list:
    "Render the processed Quarto project `proj_dir` into `out` with smalldocs; returns the warnings that matter."
    from smalldocs.config import load
    project = load(proj_dir)
    project.config.setdefault("project", {})["output-dir"] = str(Path(out).resolve())
    site = _nbdev_site_class()(project, quiet=quiet)
    site.build()
    offline_css(Path(out))
    (Path(out) / ".nojekyll").touch()  # GitHub Pages: publish site_libs and friends as they are
    return [w for w in site.warnings if not any(h in w for h in HARMLESS)]


_REMOTE_IMPORT = re.compile(r"@import\s+url\(\s*['\"]?(?:https?:)?//[^)]*\)\s*;?")


def offline_css(out: Path) -> list:
    "Drop `@import url(https://...)` (Bootswatch's web fonts) from the site's CSS: the theme's own font stack then applies, offline."
    changed = []
    for css in Path(out).rglob("*.css"):
        text = css.read_text(encoding="utf-8")
        new = _REMOTE_IMPORT.sub("", text)
        if new != text:
            css.write_text(new, encoding="utf-8")
            changed.append(css)
    return changed


def build(out=None, engine="auto", root=ROOT, quiet=False) -> Path:
    "Build the site into `out` (default: nbdev's `doc_path`) with Quarto (`nbdev-docs`) or with nbdev + smalldocs."
    from nbdev.config import get_config
    with _cwd(root): cfg = get_config()
    out = Path(out).resolve() if out else cfg.doc_path
    if engine == "auto": engine = "quarto" if quarto_available() else "smalldocs"
    t0 = time.time()
    if engine == "quarto":
        if not quarto_available(): raise DocsError("engine quarto: no `quarto` on PATH")
        nbdev_docs = Path(sys.executable).with_name("nbdev-docs")
        subprocess.run([str(nbdev_docs) if nbdev_docs.exists() else "nbdev-docs"], cwd=root, check=True)
        if out != cfg.doc_path:
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(cfg.doc_path, out)
    elif engine == "smalldocs":
        proc = proc_notebooks(root)
        for w in render_smalldocs(proc, out): print(f"warning: {w}", file=sys.stderr)
    else: raise DocsError(f"unknown engine {engine!r}: use auto, quarto or smalldocs")
    if not quiet:
        pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html") if "site_libs" not in p.parts)
        print(f"docs ({engine}): {len(pages)} pages in {out} ({time.time() - t0:.1f} s): {' '.join(pages)}")
    return out


def serve(directory, port=4200, host="127.0.0.1"):
    "Serve the built site on http://host:port/ until Ctrl-C."
    directory = Path(directory).resolve()
    if not (directory / "index.html").exists(): raise SystemExit(f"{directory} has no index.html: run `make docs` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    with http.server.ThreadingHTTPServer((host, port), handler) as httpd:
        print(f"serving {directory} at http://{host}:{httpd.server_address[1]}/ (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt): httpd.serve_forever()


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/docs.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the static site")
    b.add_argument("--out", help="output folder (default: nbdev's doc_path, _docs/)")
    b.add_argument("--engine", default="auto", choices=["auto", "quarto", "smalldocs"],
                   help="auto: quarto when it is on PATH, else smalldocs")
    s = sub.add_parser("serve", help="serve the built site on localhost")
    s.add_argument("--dir", default=str(ROOT / "_docs"), help="the built site (default _docs/)")
    s.add_argument("--port", type=int, default=4200)
    s.add_argument("--host", default="127.0.0.1")
    a = p.parse_args(argv)
    try:
        if a.cmd == "build": build(a.out, a.engine)
        else: serve(a.dir, a.port, a.host)
    except DocsError as e: raise SystemExit(f"docs: {e}")


if __name__ == "__main__":
    main()
