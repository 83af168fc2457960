"""`make lab`: JupyterLab on `nbs/` with the .venv's `python3` kernel, on 127.0.0.1, no browser.

The test starts the server with the Makefile's own `lab` target (so it checks the command users run, not a copy),
on a free port, with a known token (`JUPYTER_TOKEN`), and with every Jupyter folder (config, data, runtime, lab
settings and workspaces) in the test's temporary folder, so the user's own Jupyter setup is neither read nor written.
`-o <stamp>` tells make not to redo `setup`: pytest already runs inside that .venv. It waits (bounded) for the
server file Jupyter writes into the runtime folder, then asks the REST API, over loopback only, for its status, the
notebooks of `nbs/` and the kernelspecs; the server's whole process group is stopped afterwards, pass or fail.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
VENV = Path(sys.executable).parent.parent  # the .venv pytest runs in: `make lab VENV=...` must use the same one
TOKEN = "drsn-tvl-test-token"
START_TIMEOUT = 90  # s: a cold JupyterLab start on a loaded 2-core machine takes ~5-20 s


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = TOKEN, timeout: float = 10):
    "GET `url` with the token in the Authorization header; returns (status, parsed JSON or None)."
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def _stop(proc: subprocess.Popen):
    "Terminate the server's process group (make, bash, jupyter-lab, any kernels), wait, then kill if it lingers."
    if proc.poll() is not None: return
    try: os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError: return
    try: proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        try: os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError: pass
        proc.wait(timeout=10)


@pytest.fixture
def lab(tmp_path):
    "A `make lab` server on a free port with token TOKEN; yields (base_url, port, server_info, log_path)."
    make = shutil.which("make")
    if make is None: pytest.skip("`make` is not on PATH: `make lab` cannot be run here")
    jdir = tmp_path / "jupyter"
    env = {**os.environ, "JUPYTER_TOKEN": TOKEN,
           "JUPYTER_CONFIG_DIR": str(jdir / "config"), "JUPYTER_DATA_DIR": str(jdir / "data"),
           "JUPYTER_RUNTIME_DIR": str(jdir / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(jdir / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(jdir / "lab-workspaces"), "IPYTHONDIR": str(jdir / "ipython"),
           "OMP_NUM_THREADS": "1"}
    # no extra Jupyter search paths; and no flags of an outer `make test` (jobserver, variable overrides) leak in
    for k in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PORT"): env.pop(k, None)
    port = _free_port()
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([make, "--no-print-directory", "-C", str(ROOT), "-o", str(VENV / ".installed-stamp"),
                                 "lab", f"VENV={VENV}", f"PORT={port}"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline, info = time.monotonic() + START_TIMEOUT, None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"`make lab` exited with {proc.returncode} before serving:\n{log.read_text()[-4000:]}")
            files = sorted((jdir / "runtime").glob("jpserver-*.json"))
            if files:
                try: info = json.loads(files[0].read_text())
                except json.JSONDecodeError: info = None  # being written: read it again
            if info:
                try:
                    if _get(f"http://127.0.0.1:{info['port']}/api/status", timeout=2)[0] == 200: break
                except OSError: pass
            time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not answer within {START_TIMEOUT} s:\n{log.read_text()[-4000:]}")
        yield f"http://127.0.0.1:{info['port']}", port, info, log
    finally:
        _stop(proc)


def test_lab_serves_the_notebooks(lab):
    base, port, info, log = lab
    # PORT= is honoured, the server listens on loopback only, and it serves nbs/ (not the repository root)
    assert info["port"] == port, f"asked for port {port}, the server took {info['port']}"
    assert info["hostname"] == "127.0.0.1", f"the server binds {info['hostname']!r}, expected 127.0.0.1 only"
    assert Path(info["root_dir"]).resolve() == NBS.resolve(), f"serves {info['root_dir']}, expected {NBS}"
    # the URL users open, with its token, is printed
    text = log.read_text()
    assert f"http://127.0.0.1:{port}/lab?token=" in text, f"no URL with a token in the output:\n{text[-4000:]}"

    status, body = _get(f"{base}/api/status")
    assert status == 200 and isinstance(body, dict) and "started" in body, (status, body)
    # the token is required: without it (or with a wrong one) the API refuses
    assert _get(f"{base}/api/status", token=None)[0] == 403
    assert _get(f"{base}/api/contents", token="wrong")[0] == 403

    status, body = _get(f"{base}/api/contents")
    assert status == 200, status
    listed = {c["name"] for c in body["content"] if c["type"] == "notebook"}
    expected = {p.name for p in NBS.glob("*.ipynb")}
    assert {"00_core.ipynb", "11_cli.ipynb", "index.ipynb"} <= expected  # the layout the README's table describes
    assert listed == expected, f"lab lists {sorted(listed)}, nbs/ holds {sorted(expected)}"

    status, body = _get(f"{base}/api/kernelspecs")
    assert status == 200, status
    assert body["default"] == "python3", f"default kernel is {body['default']!r}, expected python3"
    assert "python3" in body["kernelspecs"], f"no python3 kernel: {sorted(body['kernelspecs'])}"
    argv = body["kernelspecs"]["python3"]["spec"]["argv"]
    # the project's kernel: the .venv's interpreter (the one `make setup` installs the kernelspec for)
    assert Path(argv[0]).resolve() == Path(sys.executable).resolve(), f"python3 kernel runs {argv[0]}, not the .venv's"


def _make(*args) -> str:
    make = shutil.which("make")
    if make is None: pytest.skip("`make` is not on PATH")
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run([make, "--no-print-directory", "-C", str(ROOT), *args], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_lab_command_defaults_and_help():
    "What the server test cannot see: no browser is opened, port 8888 by default, and `make help` lists the target."
    stamp = str(VENV / ".installed-stamp")
    dry = _make("-n", "-o", stamp, "lab", f"VENV={VENV}")
    assert "jupyter-lab" in dry, f"`make -n lab` runs no jupyter-lab:\n{dry}"
    cmd = dry[dry.index("jupyter-lab"):]
    for flag in ("--no-browser", "--ip=127.0.0.1", "--port=8888"):
        assert flag in cmd, f"{flag} missing from `make lab`: {cmd}"
    assert "--port=8899" in _make("-n", "-o", stamp, "lab", f"VENV={VENV}", "PORT=8899")
    assert "make lab" in _make("-s", "help")
