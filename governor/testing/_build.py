"""What every tree builder shares: the target files, the spec, the rules being collected, the rng.

A builder writes the files of one part of the board where that board's kernel puts them (the
catalogue's ``real_path``, else its literal ``paths[0]``), links them where the kernel links them,
and records a rule naming the kernel behaviour that later writes get (:mod:`._kernel`).
"""

from __future__ import annotations

import glob
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from governor.core.board import BoardSpec, Domain
from governor.testing._fs import READ_ONLY, READ_WRITE, TreeFiles

__all__ = ["BuildContext", "domain_dir", "is_modern", "write_all"]


@dataclass
class BuildContext:
    files: TreeFiles
    spec: BoardSpec
    state: dict[str, Any]
    rng: random.Random
    variant: str = ""
    hwmon_base: int = 0

    def rule_dir(self, real_dir: str, **rule: Any) -> None:
        self.state["nodes"][real_dir] = rule

    def rule_file(self, real_file: str, **rule: Any) -> None:
        self.state["files"][real_file] = rule


def is_modern(spec: BoardSpec) -> bool:
    """Kernels >= 5.3 clamp conflicting limits; the catalogue says which kind a board runs."""
    return spec.board.limit_writes == "clamp"


def domain_dir(domain: Domain) -> str:
    """Where the kernel really puts a domain's node: ``real_path``, else a literal first pattern."""
    if domain.real_path:
        return domain.real_path
    first = domain.paths[0]
    if glob.has_magic(first):
        raise ValueError(f"domain {domain.name!r}: paths[0] {first!r} is a pattern; give real_path for fake trees")
    return first


def write_all(
    files: TreeFiles, directory: str, ro: Mapping[str, object], rw: Mapping[str, object] | None = None
) -> None:
    """Write read-only and read-write attributes of one directory, each with the kernel's newline."""
    for mode, group in ((READ_ONLY, ro), (READ_WRITE, rw or {})):
        for leaf, value in group.items():
            text = value if isinstance(value, str) and value.endswith("\n") else f"{value}\n"
            files.write(f"{directory}/{leaf}", text, mode, atomic=False)
