"""The shipped web client (src/veche/web_client/dist) is what its source (web/) builds to.

`npm ci && npm run build` runs in a copy of web/, and every built file must be byte-identical to
the shipped one: a change to web/ without a rebuild, or a hand-edited bundle, fails here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
SHIPPED = ROOT / "src/veche/web_client/dist"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.timeout(900)
def test_shipped_bundle_is_the_build_of_web(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.fail("npm is needed to rebuild the web client (Node 20)")
    copy = tmp_path / "web"
    shutil.copytree(WEB, copy, ignore=shutil.ignore_patterns("node_modules"))
    for cmd in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "build"]):
        done = subprocess.run(cmd, cwd=copy, capture_output=True, text=True, timeout=800)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    built = _tree(tmp_path / "src/veche/web_client/dist")
    shipped = _tree(SHIPPED)
    assert "index.html" in built and any(n.endswith(".wasm") for n in built), sorted(built)
    assert sorted(built) == sorted(shipped), "the shipped file list differs from a fresh build: rebuild (npm run build in web/)"
    differing = [name for name in built if built[name] != shipped[name]]
    assert not differing, f"shipped files differ from a fresh build: {differing}; rebuild (npm run build in web/)"
