"""Ultralytics' own test suite, offline, with and without yolo-improve installed: the outcomes must not differ.

A YAML or checkpoint that names none of our modules must behave exactly as stock Ultralytics. This runs the
``tests/`` folder of the Ultralytics sdist (the installed version's; download it once with
``pip download --no-binary :all: --no-deps ultralytics==<version>``) twice in fresh interpreters: once with the
start-up hook disarmed (``YOLO_IMPROVE_HOOK=0``; the run checks that ``yolo_improve`` was never imported) and once
with ``import yolo_improve`` before the first test. Both runs have the network switched off (sockets to anything
but this machine raise OSError), a private Ultralytics settings dir and ``YOLO_OFFLINE=true``, so tests that need
a download fail alike in both. Prints each run's totals and every test whose outcome differs; exit 1 if any does.

    PYTHONPATH=src python benchmarks/ultralytics_suite.py SDIST.tar.gz|SDIST_DIR [pytest args, e.g. tests/test_python.py
        -k "yaml or cfg"] [--work DIR] [--timeout 3600]

Not part of CI: the whole suite takes far longer than the project's test budget (hours on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

# Loaded into each run with ``-p``: the network switch, the plug-in (or the proof of its absence).
PLUGIN = """
import os, socket, sys

_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo
LOCAL = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "")


def _host(address):
    return address[0] if isinstance(address, tuple) else None  # AF_UNIX addresses are paths: local


def _connect_offline(self, address):
    if _host(address) not in (None, *LOCAL):
        raise OSError(f"network is off in this run (ultralytics_suite.py): {address}")
    return _connect(self, address)


def _getaddrinfo_offline(host, *args, **kwargs):
    if host not in (None, *LOCAL):
        raise socket.gaierror(f"network is off in this run (ultralytics_suite.py): {host}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.getaddrinfo = _connect_offline, _getaddrinfo_offline


def pytest_configure(config):
    if os.environ["YI_SUITE_MODE"] == "plugin":
        import yolo_improve  # noqa: F401  (installs the integration)


def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["YI_SUITE_LOADED"], "w") as f:
        f.write(str("yolo_improve" in sys.modules))
"""


def tests_folder(sdist: Path, work: Path) -> Path:
    """The folder holding the sdist's ``tests/`` (extracted from a .tar.gz into ``work``, once)."""
    if sdist.is_dir():
        root = sdist if (sdist / "tests").is_dir() else next(sdist.glob("*/tests")).parent
        return root
    out = work / "sdist"
    if not (out / "tests").is_dir():
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/tests/" in f"/{m.name}" and m.isfile()]
            for m in members:
                m.name = m.name.split("/", 1)[1]  # drop the ultralytics-<version>/ prefix
            tar.extractall(out, members=members)  # tests only: the installed ultralytics is the one tested
    return out


def run(mode: str, root: Path, work: Path, pytest_args: list[str], timeout: float) -> dict[str, tuple[str, str]]:
    """One pytest run; returns ``{test id: (outcome, first line of its message)}``."""
    (work / "yi_suite_plugin.py").write_text(PLUGIN)
    xml, loaded = work / f"{mode}.xml", work / f"{mode}.loaded"
    env = {
        **os.environ,
        "YI_SUITE_MODE": mode,
        "YI_SUITE_LOADED": str(loaded),
        "YOLO_OFFLINE": "true",
        "YOLO_AUTOINSTALL": "false",
        "YOLO_CONFIG_DIR": tempfile.mkdtemp(prefix=f"yi-suite-{mode}-", dir=work),
        "YOLO_IMPROVE_HOOK": "0" if mode == "stock" else "1",
        "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "yi_suite_plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        "--tb=line",
        f"--junitxml={xml}",
        *(pytest_args or ["tests"]),
    ]
    print(f"[{mode}] {' '.join(cmd[2:])}", flush=True)
    try:
        subprocess.run(cmd, cwd=root, env=env, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        print(f"[{mode}] stopped after {timeout:.0f} s: outcomes so far are not written; give a smaller subset")
        raise SystemExit(2) from None
    if mode == "stock" and loaded.read_text() != "False":
        raise SystemExit("the stock run imported yolo_improve: the comparison would be void")
    if mode == "plugin" and loaded.read_text() != "True":
        raise SystemExit("the plug-in run did not import yolo_improve")
    out = {}
    for case in ET.parse(xml).iter("testcase"):
        tid = f"{case.get('classname')}::{case.get('name')}"
        child = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        outcome = "passed" if child is None else {"failure": "failed"}.get(child.tag, child.tag)
        message = (
            (child.get("message") or "").strip().splitlines()[0][:160]
            if child is not None and (child.get("message") or "").strip()
            else ""
        )
        out[tid] = (outcome, message)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sdist", type=Path, help="ultralytics-<version>.tar.gz or its extracted folder")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    a, pytest_args = ap.parse_known_args()
    import ultralytics

    if ultralytics.__version__ not in a.sdist.name and a.sdist.suffix:
        print(f"WARNING: {a.sdist.name} is not the installed ultralytics {ultralytics.__version__}")
    work = (a.work or Path(tempfile.mkdtemp(prefix="yi-suite-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    root = tests_folder(a.sdist.resolve(), work)
    results = {mode: run(mode, root, work, pytest_args, a.timeout) for mode in ("stock", "plugin")}
    for mode, res in results.items():
        counts = {}
        for outcome, _ in res.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        print(f"{mode:<7} {len(res)} tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    stock, plugin = results["stock"], results["plugin"]
    differ = sorted(
        t for t in stock.keys() | plugin.keys() if stock.get(t, ("absent",))[0] != plugin.get(t, ("absent",))[0]
    )
    for t in differ:
        s, p = stock.get(t, ("absent", "")), plugin.get(t, ("absent", ""))
        print(f"DIFFERS {t}: stock {s[0]} {s[1]!r}; with yolo-improve {p[0]} {p[1]!r}")
    print(f"{len(differ)} outcome(s) differ (ultralytics {ultralytics.__version__}; junit files in {work})")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
