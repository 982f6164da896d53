"""Small hand-built trees for driver unit tests (the full board trees come from governor.testing)."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path

from governor.drivers._sysfs import SysfsRejected, SysfsRoot


def build(root: Path, files: Mapping[str, str], links: Mapping[str, str] | None = None) -> None:
    """Write ``files`` (rel -> text, newline added as the kernel prints it) and ``links`` (rel -> target rel)."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text.endswith("\n") or text == "" else text + "\n")
    for rel, target in (links or {}).items():
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(root / target, link.parent), link)


class OldKernelRoot(SysfsRoot):
    """Records every write and, like a 4.9 kernel, rejects a limit write that would invert min/max.

    ``pairs`` maps a min file to its max file (and back) so the check knows the partner.
    """

    def __init__(self, root: Path, pairs: Mapping[str, str]) -> None:
        super().__init__(root)
        self.writes: list[tuple[str, str]] = []
        self.partner = {**pairs, **{v: k for k, v in pairs.items()}}
        self.mins = set(pairs)

    def _write_text(self, rel: str, text: str) -> None:
        if rel in self.partner:
            other = int(self.read(self.partner[rel]))
            value = int(text)
            inverted = value > other if rel in self.mins else value < other
            if inverted:
                raise SysfsRejected(errno.EINVAL, f"the kernel rejected {text!r} for {rel}: Invalid argument")
        self.writes.append((rel, text))
        super()._write_text(rel, text + "\n")
