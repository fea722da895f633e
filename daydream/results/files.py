"""Writing result files into a directory: report tables, selection lists, exported essays.

Invariants:

- A file is written only inside its directory and never through a link: the text goes to a
  new temporary file created there exclusively (``O_EXCL | O_NOFOLLOW``), which is then
  renamed over the name. A link planted at the name is replaced, never followed, so no
  file outside the directory is ever overwritten. (The directory itself is the user's
  choice, link or not.)
- A name made from data (an essay id) is cleaned: letters, digits, ``.``, ``_`` and ``-``
  only (never a path separator or a newline), not starting with a dot, at most 120
  characters. A name that had to change ends with a hash of the original, so two ids
  never end up as one name; ``UniqueNames`` de-duplicates within one export.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path

NAME_CHARS = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, *, limit: int = NAME_CHARS) -> str:
    """``text`` as a file name part: itself when already safe and short, else cleaned and
    cut, with a hash of the original appended."""
    cleaned = _UNSAFE.sub("_", text).lstrip(".")
    if cleaned == text and 0 < len(text) <= limit:
        return text
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=5).hexdigest()
    return f"{cleaned[: limit - len(digest) - 1]}-{digest}"


class UniqueNames:
    """File names for one export, each different from those given before (``-2``, ``-3``...
    before the suffix)."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, stem: str, suffix: str) -> str:
        name, number = f"{stem}{suffix}", 1
        while name.lower() in self._taken:  # case-insensitive file systems too
            number += 1
            name = f"{stem}-{number}{suffix}"
        self._taken.add(name.lower())
        return name


def write_file(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) as the file ``path``, never through a link (see the module's
    invariants); returns ``path``."""
    temporary = f".{path.name[:60]}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    if os.open not in os.supports_dir_fd:  # Windows: names relative to the directory's path
        _write_through(path.parent / temporary, path, text, flags, None)
        return path
    directory = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        _write_through(Path(temporary), Path(path.name), text, flags, directory)
    except OSError as exc:  # name the file, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(directory)
    return path


def _write_through(
    temporary: Path, final: Path, text: str, flags: int, directory: int | None
) -> None:
    """Create ``temporary`` exclusively, write ``text`` to it, rename it to ``final``."""
    descriptor = os.open(temporary, flags, 0o666, dir_fd=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(temporary, final, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise
