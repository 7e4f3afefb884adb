"""``calibench data export``: a set in a format other tools read, with its card beside it.

Formats live in :data:`FORMATS` (name -> how to write it and where its card
goes), so a new format is one entry, not another branch in the command:

* ``jsonl``: one JSON object per window (text, token count, provenance) in a
  file; the card is ``<name>.card.md`` beside it (``windows.jsonl`` ->
  ``windows.card.md``), so two exports into one folder keep their own cards;
* ``hf``: a ``datasets`` folder (:mod:`calibench.card.export_hf`) whose
  ``README.md`` is the card.

Every check that can fail runs before the card is computed (its contamination
check reads every offline benchmark), and the card is rendered before
anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.card import card_text, write_card
from calibench.card.export_hf import README, write_hf
from calibench.core.fsutil import check_new_output, check_output_file
from calibench.core.registry import Registry
from calibench.data.calibset import CalibrationSet


@dataclass(frozen=True)
class ExportFormat:
    name: str
    description: str
    check: Callable[[Path, bool], None]  # refuse a bad (or, unless forced, taken) destination before any work
    write: Callable[[CalibrationSet, Path, Any, str, bool], list[Path]]  # the paths it wrote, card included


def _check_file(out: Path, force: bool = False) -> None:
    check_output_file(out, example="windows.jsonl", force=force)
    check_output_file(jsonl_card_path(out), example="windows.card.md", force=force)


def jsonl_card_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.card.md" if out.suffix else f"{out.name}.card.md")


def _write_jsonl(calib: CalibrationSet, out: Path, tokenizer: Any, card: str, force: bool = False) -> list[Path]:
    card_path = jsonl_card_path(out)
    calib.export_jsonl(out, tokenizer)
    try:
        write_card(card_path, card)
    except BaseException:
        out.unlink(missing_ok=True)  # both or neither
        raise
    return [out, card_path]


def _check_dir(out: Path, force: bool = False) -> None:
    check_new_output(out, force=force)


def _write_hf(calib: CalibrationSet, out: Path, tokenizer: Any, card: str, force: bool = False) -> list[Path]:
    write_hf(calib, out, tokenizer, card, force=force)
    return [out, out / README]


FORMATS: Registry[ExportFormat] = Registry("export format", ordered=True)
for _format in (
    ExportFormat("jsonl", "decoded windows as JSON lines, card beside as NAME.card.md", _check_file, _write_jsonl),
    ExportFormat(
        "hf",
        "a datasets save_to_disk folder (input_ids, attention_mask, text), card as README.md",
        _check_dir,
        _write_hf,
    ),
):
    FORMATS.register(_format.name, _format)


def get_format(name: str) -> ExportFormat:
    return FORMATS.get(name)


def export_set(
    calib: CalibrationSet, out: str | Path, fmt: str, tokenizer: Any, force: bool = False, **card_options: Any
) -> list[Path]:
    """Write ``calib`` at ``out`` in format ``fmt`` with its card; return the paths written.

    A taken ``out`` is refused unless ``force`` (then it is replaced once the new one is complete).
    """
    chosen = get_format(fmt)
    out = Path(out)
    chosen.check(out, force)
    card = card_text(calib, tokenizer, extra=usage_notes(fmt, out), **card_options)
    return chosen.write(calib, out, tokenizer, card, force)


def usage_notes(fmt: str, out: Path) -> list[str]:
    """How to use the export, for the card."""
    if fmt == "hf":
        return [
            "## Use",
            "",
            "```python",
            "from datasets import load_from_disk",
            f'calib = load_from_disk("{out.name}")  # input_ids, attention_mask, text; one row per window',
            "# llm-compressor: oneshot(model=..., dataset=calib.remove_columns('text'), recipe=..., "
            "num_calibration_samples=len(calib))",
            "```",
            "",
            "Rows hold each window at its own length: padded positions are dropped, because llm-compressor "
            "counts every position of a batch as calibration data.",
        ]
    return [
        "## Use",
        "",
        f"`{out.name}`: one JSON object per window (`index`, `set_id`, `num_tokens`, `provenance`, `text`).",
    ]
