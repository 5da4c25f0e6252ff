"""The built web client (web/ in the source tree, built into dist/ here by `npm run build`).

It ships inside the Python package so that installing Veche needs no Node; the HTTP side is
veche.http.web_client."""

from pathlib import Path

DIST = Path(__file__).parent / "dist"
