"""The report's note lines: what a reader must know before trusting a number (printed under the title).

Each rule is a function of the results frame (and the store's failures)
returning zero or more one-line notes; :data:`RULES` runs them in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calibench.assets import ASSETS, asset_manifest
from calibench.compress.methods import METHODS
from calibench.core.errors import CalibenchError
from calibench.report.tables import PPL_PREFIX, accuracy_table, noise_floor_table, perplexity_table

SINGLE_SOURCE = (
    "The study has a single calibration source ({source}): no source comparison is possible, so the "
    "paired tables are left out; add a second source to compare them."
)


def limit_notes(frame: Any) -> list[str]:
    limited = frame[frame["limit"].notna() & ~frame.task.str.startswith(PPL_PREFIX)]
    if limited.empty:
        return []
    limits = sorted({int(x) for x in limited["limit"].unique()})
    return [
        f"Zero-shot results used --limit {', '.join(map(str, limits))} items per task: they are not comparable "
        "with full runs or with published numbers."
    ]


def single_source_notes(frame: Any) -> list[str]:
    """One line when the compressed cells share one source: the paired section is skipped, and why."""
    sources = sorted(frame.loc[(frame.method != "dense") & (frame.source != "-"), "source"].unique())
    return [SINGLE_SOURCE.format(source=sources[0])] if len(sources) == 1 else []


def calibration_free_notes(frame: Any) -> list[str]:
    """Methods that never read the calibration set: a zero spread across sets is by construction."""
    notes = []
    for label in sorted(frame.loc[frame.method_name != "", "method"].unique()):
        names = frame.loc[frame.method == label, "method_name"].iloc[0].split("+")
        if all(name in METHODS and not METHODS.get(name).reads_calibration for name in names):
            notes.append(
                f"{label} does not read calibration data: its cells are identical across sets and sources, so its "
                "spread across sets is zero by construction, not evidence about calibration data."
            )
    return notes


def numerics_notes(frame: Any) -> list[str]:
    kinds = sorted(k for k in frame.numerics.unique() if k)
    if len(kinds) < 2:
        return []
    return [
        f"Cells ran on {len(kinds)} different machines or kernel settings ({'; '.join(kinds)}): differences between "
        "them include float-order noise (see the noise floor); rerun with --reproducible on CPU for "
        "machine-independent numbers."
    ]


def prequantized_notes(frame: Any) -> list[str]:

    notes = []
    for model in sorted(frame.model.unique()):
        if model in ASSETS:
            try:
                prequant = asset_manifest(model).get("prequantized")
            except CalibenchError:
                prequant = None
            if prequant:
                notes.append(
                    f"{model} was {prequant} (about 4-bit) before calibench dequantized it: re-quantizing it to 4 bits "
                    "understates the damage a full-precision model would show. "
                    "Point calibench at hub models for real numbers."
                )
    return notes


def noise_floor_notes(noise: Any) -> list[str]:
    """Say where the across-set spread or the source gap is no larger than float-order noise."""
    notes = []
    for _, row in noise.iterrows() if len(noise) else []:
        floor, std, gap = row["noise floor"], row["mean std across sets"], row["source gap"]
        # a tolerance: an accuracy gap of one item and a floor of one item are equal up to float rounding
        weak = [
            f"{what} ({value:.4g})"
            for what, value in (("the mean std across sets", std), ("the best-minus-worst gap across sources", gap))
            if value == value and value <= floor * (1 + 1e-9)
        ]
        if weak:
            notes.append(
                f"{row['model']} {row['method']} {row['task']}: {' and '.join(weak)} "
                f"{'are' if len(weak) > 1 else 'is'} within the numerical noise floor ({floor:.4g}, the largest change "
                "under harmless perturbations): at this n and seq_len that is not evidence about calibration data."
            )
    return notes


def _noise_notes(everything: Any, frame: Any) -> list[str]:
    return noise_floor_notes(noise_floor_table(everything, accuracy_table(frame), perplexity_table(frame)))


def failure_notes(failures: list[tuple[dict[str, Any], str]]) -> list[str]:
    if not failures:
        return []
    return [
        f"{len(failures)} cell(s) failed and are left out: "
        + "; ".join(f"{c['method']} {c['source']}#{c['set_index']}: {e}" for c, e in failures[:5])
    ]


RULES: list[Callable[[Any], list[str]]] = [
    limit_notes,
    single_source_notes,
    calibration_free_notes,
    numerics_notes,
    prequantized_notes,
]


def frame_notes(frame: Any) -> list[str]:
    """The notes every rule of :data:`RULES` finds in the grid's frame."""
    return [note for rule in RULES for note in rule(frame)]


def report_notes(everything: Any, frame: Any, failures: list[tuple[dict[str, Any], str]]) -> list[str]:
    """Every note of a study: the frame rules on the grid, the noise floor (from the reruns), the failures."""
    return frame_notes(frame) + _noise_notes(everything, frame) + failure_notes(failures)
