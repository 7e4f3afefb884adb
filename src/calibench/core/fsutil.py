"""Atomic writes: nothing half-written is ever left at the destination.

Every artifact is written into a hidden temporary sibling, ``.NAME.tmp-PID-XXXX``,
and renamed into place when complete.  A process killed mid-write (SIGKILL
runs no cleanup) leaves only that sibling behind; the PID in its name tells a
later run whether its writer is gone, so the next write to the same place, and
``calibench clean``, remove it.  Outputs are checked before any work starts:
a taken, unwritable or impossible ``--out`` is refused in a second, not after
a long build.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from calibench.core import failpoints
from calibench.core.errors import CalibenchError

_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+$")


def _tmp_prefix(dest: Path) -> str:
    return f".{dest.name}.tmp-{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (this one included; someone else's counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def is_stale_temp(path: Path) -> bool:
    """A temporary of an interrupted write: its writer's PID is dead (or unrecorded, from older versions)."""
    match = _TMP.match(path.name)
    if match is None:
        return False
    pid = match.group("pid")
    return pid is None or not pid_alive(int(pid))


def tree_size(path: Path) -> int:
    """Bytes in a file or under a directory."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def remove_tree(path: Path) -> int:
    """Remove a file or tree; return the bytes freed."""
    size = tree_size(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return size


def remove_stale_temps(dest: str | Path) -> int:
    """Remove the leftovers of interrupted writes to ``dest`` (same directory, same name); bytes freed."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return 0
    freed = 0
    for entry in dest.parent.glob(f".{glob_escape(dest.name)}.tmp-*"):
        match = _TMP.match(entry.name)
        if match and match.group("name") == dest.name and is_stale_temp(entry):
            freed += remove_tree(entry)
    return freed


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def find_stale_temps(
    roots: Iterable[str | Path], skip: tuple[str, ...] = (".git", ".venv", "node_modules")
) -> list[Path]:
    """Every stale temporary under ``roots`` (not descending into them or into ``skip``)."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, _filenames in os.walk(root):
            here = Path(dirpath)
            for name in list(dirnames):
                if name in skip:
                    dirnames.remove(name)
                elif is_stale_temp(here / name):
                    found.append(here / name)
                    dirnames.remove(name)
            found.extend(here / f for f in _filenames if is_stale_temp(here / f))
    return sorted(found)


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


NAME_MAX = 255  # bytes per path component on Linux, macOS and Windows file systems alike


def check_name_lengths(path: str | Path) -> None:
    """Refuse a path with a component longer than file systems allow, before anything tries to create it."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            shown = part if len(part) <= 60 else f"{part[:30]}...{part[-20:]}"
            raise CalibenchError(
                f"name too long for the file system ({size} bytes, at most {NAME_MAX}): {shown}; choose a shorter one"
            )


def check_writable_location(dest: str | Path) -> None:
    """Refuse a destination whose directory cannot be created or written (a file in the way, /proc, read-only)."""
    dest = Path(dest)
    check_name_lengths(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    anchor = _nearest_existing(parent.absolute())
    if not anchor.is_dir():
        raise CalibenchError(f"cannot write {dest}: {anchor} is a file, not a directory; choose another path")
    try:
        probe = tempfile.mkdtemp(prefix=".calibench-write-check-", dir=anchor)
    except OSError as exc:
        raise CalibenchError(
            f"cannot write {dest}: {anchor} is not writable ({exc.strerror or exc}); choose another path"
        ) from None
    os.rmdir(probe)


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _refuse_replacing_a_home(dest: Path) -> None:
    """``--force`` replaces an output, never the directory the user stands in, their home or a root."""
    here = dest.absolute()
    guarded = {Path("/"), Path.home().absolute(), Path.cwd().absolute()}
    if here in guarded or Path.cwd().absolute().is_relative_to(here):
        raise CalibenchError(f"--force will not replace {dest}: it holds the current directory, or is a home or root")


def check_new_output(dest: str | Path, force: bool = False, option: str = "--out") -> None:
    """Refuse to write a directory over something that exists (an empty directory is fine), or where it cannot be
    written; ``force`` allows replacing what exists (it is replaced only when the new output is complete).

    Called before long work starts, so that a user learns about a taken --out
    in a second rather than after the build.  Leftovers of interrupted writes
    to the same place are removed here.
    """
    dest = Path(dest)
    check_name_lengths(dest)
    if dest.exists() and not _empty_dir(dest):
        if not force:
            what = "a file" if dest.is_file() else "a non-empty directory"
            raise CalibenchError(f"{dest} already exists ({what}): choose another {option} or pass --force")
        _refuse_replacing_a_home(dest)
    check_writable_location(dest)
    remove_stale_temps(dest)


def check_output_file(
    dest: str | Path, example: str = "results.json", force: bool = False, option: str = "--out"
) -> None:
    """Refuse a file destination that is a directory, exists (unless ``force``) or cannot be written."""
    dest = Path(dest)
    check_name_lengths(dest)
    if dest.is_dir():
        raise CalibenchError(f"{dest} is a directory: give a file name inside it, such as {dest / example}")
    if (dest.exists() or dest.is_symlink()) and not force:
        raise CalibenchError(f"{dest} already exists: choose another {option} or pass --force")
    check_writable_location(dest)
    remove_stale_temps(dest)


@contextlib.contextmanager
def output_slot(dest: str | Path, force: bool = False) -> Iterator[Path]:
    """Where a writer that insists on a new output should write ``dest``.

    ``dest`` itself, unless it exists and ``force`` replaces it: then a fresh
    hidden sibling (a temporary name that ``clean`` and the next write remove
    if this process dies), swapped in for ``dest`` only when the writer
    succeeds.  On failure ``dest`` is left exactly as it was.
    """
    dest = Path(dest)
    if not (force and (dest.exists() or dest.is_symlink()) and not _empty_dir(dest)):
        yield dest
        return
    slot = Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), dir=dest.parent))
    slot.rmdir()  # the writer creates it; the unique name stays ours
    try:
        yield slot
        _swap_in(slot, dest)
    except BaseException:
        if slot.exists() or slot.is_symlink():
            remove_tree(slot)
        raise


def _swap_in(new: Path, dest: Path) -> None:
    """Replace ``dest`` (a file or a tree) by ``new``: the old one moves aside first, then goes."""
    if not (dest.exists() or dest.is_symlink()):
        os.replace(new, dest)
        return
    aside = Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), dir=dest.parent)) / "old"
    os.replace(dest, aside)
    try:
        os.replace(new, dest)
    except BaseException:
        os.replace(aside, dest)
        raise
    finally:
        remove_tree(aside.parent)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks (checkpoints and GGUF files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of a user's input file, or one CalibenchError saying why it cannot be read (missing, a
    directory, unreadable, not UTF-8): never a UnicodeDecodeError traceback."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CalibenchError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise CalibenchError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise CalibenchError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CalibenchError(
            f"{what} {path} is not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}); save it as UTF-8"
        ) from None


@contextlib.contextmanager
def atomic_dir(dest: str | Path, overwrite: bool = False, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that is renamed to ``dest`` on success.

    An existing ``dest`` is refused (:func:`check_new_output`) unless ``force``
    (the user's ``--force``); ``overwrite`` is for a writer that owns ``dest``
    (a cache) and skips the checks.  On any exception the temporary directory
    is removed and ``dest`` is left as it was, so an interrupted or failed
    build never leaves a partial artifact.
    """
    dest = Path(dest)
    if not overwrite:
        check_new_output(dest, force=force)
        if _empty_dir(dest):
            dest.rmdir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), dir=dest.parent))
    try:
        yield tmp
        failpoints.reach("artifact.before_rename")  # every file written, none of it at dest yet
        _swap_in(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(dest: str | Path, data: bytes) -> None:
    """Write a file through a temporary name and rename it into place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(dest), dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
