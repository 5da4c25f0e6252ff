"""Small real filesystems for tests of full and read-only disks (the tests run as root)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def tmpfs(size: str = "4m", *, read_only: bool = False, mode: str = "0700") -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="veche-tmpfs-"))
    options = f"size={size},mode={mode}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def fill(disk: Path) -> Path:
    """Write a file until the filesystem is full; deleting it frees the space again."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        block = b"\0" * 65536
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        try:
            while True:  # the last few bytes
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler
