"""The test CA lives in bench/pki.py (the federation benchmark uses it too)."""

from bench.pki import CertFiles, TestCA

__all__ = ["CertFiles", "TestCA"]
