"""Finding and loading board descriptions (``profiles/boards/<name>.toml``).

Lookup order: an explicit directory, then ``$GOVERNOR_PROFILES``, then ``profiles/`` of the source
checkout this package runs from, then the copy packed into the wheel (``governor/_profiles``). A
directory named explicitly or by the variable that holds no board files is an error, not skipped.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from governor.core.board import BoardSpec, CatalogueError, parse_board

__all__ = ["CatalogueError", "UnknownBoard", "board_names", "load_board", "load_board_file", "profiles_dir"]


class UnknownBoard(CatalogueError):
    """No catalogue file for the requested name."""


def _named_dir(path: Path, named_by: str) -> Path:
    """A directory the user named must hold the catalogue: falling back to the bundled one would
    silently show (and load) boards other than the ones asked for."""
    if not path.is_dir():
        raise CatalogueError(f"{path} ({named_by}): no such directory; give a profiles directory, "
                             "one that holds boards/<name>.toml")
    if not any((path / "boards").glob("*.toml")):
        hint = f" (it holds board files itself: give its parent, {path.parent})" if any(path.glob("*.toml")) else ""
        raise CatalogueError(f"{path} ({named_by}): holds no board descriptions, boards/<name>.toml{hint}")
    return path


def profiles_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The ``profiles/`` directory in use (holds ``boards/`` and ``models/``).

    A directory named explicitly or by ``$GOVERNOR_PROFILES`` must hold board files; only when
    neither is given is the checkout's or the wheel's copy used.
    """
    if explicit:
        return _named_dir(Path(explicit), "the profiles directory given")
    if os.environ.get("GOVERNOR_PROFILES"):
        return _named_dir(Path(os.environ["GOVERNOR_PROFILES"]), "$GOVERNOR_PROFILES")
    package = Path(__file__).resolve().parent.parent
    candidates = [package.parent / "profiles", package / "_profiles"]
    for cand in candidates:
        if (cand / "boards").is_dir():
            return cand
    raise CatalogueError(
        f"no board catalogue found (looked in {', '.join(str(c) for c in candidates)}); "
        "set GOVERNOR_PROFILES to the profiles/ directory of a dnn-governor checkout"
    )


def board_names(directory: str | os.PathLike[str] | None = None) -> list[str]:
    return sorted(p.stem for p in (profiles_dir(directory) / "boards").glob("*.toml"))


def load_board_file(path: str | os.PathLike[str]) -> BoardSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read: {exc.strerror}") from exc
    spec = parse_board(text, str(path))
    if spec.name != path.stem:
        raise CatalogueError(f"{path}: field 'board.name': {spec.name!r} must match the file name {path.stem!r}")
    return spec


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int) -> BoardSpec:
    return load_board_file(path)


def load_board(name: str, directory: str | os.PathLike[str] | None = None) -> BoardSpec:
    """Load a catalogue board by name; unknown names get the list of known ones."""
    path = profiles_dir(directory) / "boards" / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(board_names(directory))
        raise UnknownBoard(f"unknown board {name!r}; known boards: {known} (see `governor boards`)")
    return _load_cached(str(path), path.stat().st_mtime_ns)
