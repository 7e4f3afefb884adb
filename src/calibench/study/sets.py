"""Calibration sets for a study: built once per recipe, cached by content id, shared by cells.

A recipe (model tokenizer, source and its options, number of sets, n,
seq_len, seed) yields k sets: drawn together from a text source, so they
are pairwise disjoint, or generated with seeds seed, seed+1, ... for
``self``.  Each set is saved under ``sets/<set_id>/`` (its content hash) and
the recipe -> ids mapping is kept in the store, so a rerun, another method
or another worker reuses the very same sets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from calibench.core import failpoints, numerics
from calibench.core.errors import CalibenchError, CorruptArtifactError
from calibench.data.builders import build_sets, resolve
from calibench.data.calibset import CalibrationSet
from calibench.models import model_max_length
from calibench.study.cells import Cell
from calibench.study.store import Store

SETS_DIR = "sets"
# torch threads while a builder runs the model (self text, curation): the sets must not depend on --jobs
SET_THREADS = 1


def recipe_key(cell: Cell) -> str:
    payload = json.dumps(cell.set_recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _build(cell: Cell, tokenizer: Any, model_loader: Any) -> list[CalibrationSet]:
    """The recipe's sets through the builder registry, the same path as the API and ``data build``.

    Builders that run the model (``self``, ``curated``, mixtures with them) get
    the worker's already loaded model; text builders never load it.
    """

    builder, _ = resolve(cell.build_name)
    runs_model = builder.needs_model or builder.name == "mix"
    model = model_loader(cell.model) if runs_model else cell.model
    # a model's floats depend on the torch thread count, and so do the tokens it samples: one thread, whatever
    # --jobs is, so that a rerun (or a rebuild of a deleted set) on this machine gives the very same sets
    with numerics.torch_threads(SET_THREADS) if runs_model else contextlib.nullcontext():
        return build_sets(
            cell.build_name,
            model=model,
            tokenizer=tokenizer,
            max_seq_len=model_max_length(cell.model),
            n=cell.n,
            seq_len=cell.seq_len,
            seed=cell.seed,
            sets=cell.num_sets,
            **cell.source_params,
        )


def sets_for(cell: Cell, store: Store, tokenizer: Any, model_loader: Any) -> list[CalibrationSet]:
    """The k sets of the cell's recipe: from the cache when present, else built and cached."""
    root = store.directory / SETS_DIR
    key = recipe_key(cell)
    ids = store.set_ids(key)
    if len(ids) == cell.num_sets and all((root / ids[i]).is_dir() for i in range(cell.num_sets)):
        return [CalibrationSet.load(root / ids[i], tokenizer=tokenizer) for i in range(cell.num_sets)]
    built = _build(cell, tokenizer, model_loader)
    if ids and [ids.get(i) for i in range(cell.num_sets)] != [calib.set_id for calib in built]:
        # finished cells used the recorded sets: recording others would leave them pointing at sets that are gone
        raise CalibenchError(
            f"the rebuilt {cell.source} sets ({', '.join(c.set_id for c in built)}) differ from the ones this "
            f"study's cells used ({', '.join(ids[i] for i in sorted(ids))}): a model-generated set depends on the "
            f"hardware and library versions; restore {root}/<id> from a copy of the study, or run the study in a "
            "new directory"
        )
    failpoints.reach("sets.built")
    for calib in built:
        target = root / calib.set_id
        if not (target / "manifest.json").exists():
            calib.save(target, overwrite=True)
    store.record_sets(key, [calib.set_id for calib in built])
    return built


def verify_cached_sets(store: Store) -> None:
    """Refuse to run on a damaged set cache: a corrupt set must not be silently replaced.

    A removed set directory is rebuilt from its recipe (the same inputs give
    the same set); one that is present but fails verification stops the run
    with one line saying which, before any cell starts.
    """
    root = store.directory / SETS_DIR
    for set_id in store.all_set_ids():
        if (root / set_id).exists():
            try:
                cached = CalibrationSet.load(root / set_id)
                if cached.set_id != set_id:  # a valid set, but not the one the store recorded here
                    raise CorruptArtifactError(f"calibration set {root / set_id} holds set {cached.set_id}")
            except CalibenchError as exc:
                raise CorruptArtifactError(
                    f"{exc} (a cached set of study {store.directory}: remove {root / set_id} and rerun to rebuild it)"
                ) from None


def set_path(store_dir: Path, set_id: str) -> Path:
    return Path(store_dir) / SETS_DIR / set_id
