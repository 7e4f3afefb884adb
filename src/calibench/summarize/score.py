"""Score a user's own (document, summary) pairs with every judge, and tabulate how well each separates labels.

A pairs file is JSON lines, one ``{"id": ..., "document": ..., "summary": ..., "label": 0/1}`` each (the label
is optional: 1 = consistent, 0 = not; ``true``/``false`` work too).  :func:`read_pairs` refuses a bad file in
one line before any model loads; :func:`score_pairs` scores the rows with the judges asked for:

* ``lexical``: the summary's Grusky fragment ``coverage`` and ``density`` and its ``novel_1/2/3`` n-gram shares
  against the document (:mod:`.fragments`, :mod:`.novel_ngrams`): cheap, no model;
* every judge of :data:`calibench.summarize.judges.JUDGES` (``nli``: SummaC-ZS, ``harim``: HaRiM+), with its
  default model, through that judge's own scorer (the one ``calibench summ validate`` uses).

:func:`score_table` reads a scores file with labels back and gives, per score, the rows it covers, ROC-AUC and
split-half balanced accuracy with bootstrap 95% CIs (:mod:`.judge_stats`; higher score = consistent).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.core import progress
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import read_text
from calibench.core.settings import DEFAULTS
from calibench.summarize.fragments import fragments
from calibench.summarize.judge_stats import auc_with_ci, balanced_accuracy_with_ci
from calibench.summarize.novel_ngrams import novel_ngrams
from calibench.summarize.validate import CHUNK

LEXICAL = "lexical"
LEXICAL_SCORES = ("coverage", "density", "novel_1", "novel_2", "novel_3")
DEFAULT_JUDGES = "lexical,nli"


@dataclass(frozen=True)
class PairRow:
    id: str | int
    document: str
    summary: str
    label: int | None


def judge_choices() -> list[str]:
    from calibench.summarize.judges import JUDGES

    return [LEXICAL, *JUDGES.names()]


def parse_judges(text: str) -> list[str]:
    """A comma-separated judge list (``lexical``, ``nli``, ``harim``) in the order given, repeats dropped."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = judge_choices()
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ValueError(f"give judges from {', '.join(known)}, comma-separated; got '{text}'")
    return list(dict.fromkeys(names))


def _label(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise CalibenchError(
        f"{where}: 'label' is {json.dumps(value)}; give 0 (inconsistent), 1 (consistent) or leave it out"
    )


def read_pairs(path: str | Path, limit: int | None = None) -> list[PairRow]:
    """The rows of a pairs file, checked (one line naming the file and line for the first problem)."""
    path = Path(path)
    rows: list[PairRow] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(read_text(path, "pairs file").split("\n")):  # not splitlines: U+2028 is valid JSON
        if not line.strip():
            continue
        where = f"{path}: line {i + 1}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibenchError(f"{where} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise CalibenchError(f'{where} is not a JSON object: give {{"id", "document", "summary", "label"}}')
        ident = row.get("id")
        if isinstance(ident, bool) or not isinstance(ident, (str, int)):
            raise CalibenchError(f"{where} has no 'id' (a string or integer): every row needs its own id")
        for field in ("document", "summary"):
            value = row.get(field)
            if not isinstance(value, str) or not value.strip():
                raise CalibenchError(f"{where} (id {ident}) has no non-empty string '{field}'")
        key = json.dumps(ident)
        if key in seen:
            raise CalibenchError(f"{where} repeats id {key} of line {seen[key]}: give every row its own id")
        seen[key] = i + 1
        rows.append(PairRow(ident, row["document"], row["summary"], _label(row.get("label"), where)))
    if not rows:
        raise CalibenchError(f"pairs file {path} holds no rows")
    return rows[:limit] if limit else rows


def lexical_scores(document: str, summary: str) -> dict[str, float]:
    frag = fragments(summary, document)
    return {"coverage": frag.coverage, "density": frag.density, **novel_ngrams(summary, document)}


def check_judges(judges: list[str], offline: bool) -> None:
    """Every model judge's default model checked by name (no weights), before anything loads."""
    from calibench.summarize.judges import JUDGES

    for name in judges:
        if name != LEXICAL:
            kind = JUDGES.get(name)
            kind.check(kind.default_model, offline)


def score_pairs(
    rows: list[PairRow],
    judges: list[str],
    *,
    batch_size: int = DEFAULTS.batch_size,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
) -> list[dict[str, Any]]:
    """One record per row: ``id``, ``label`` (when given) and ``scores`` (name -> value, None where undefined)."""
    from calibench.summarize.judges import JUDGES

    scores: list[dict[str, float]] = [{} for _ in rows]
    for name in judges:
        if name == LEXICAL:
            for row, out in zip(rows, scores):
                out.update(lexical_scores(row.document, row.summary))
            continue
        kind = JUDGES.get(name)
        model = kind.default_model
        chat = kind.default_chat(model)  # harim: its chat template when it has one, as summ validate's default
        score = kind.scorer(model, "sentences", chat, batch_size=batch_size, dtype=dtype, device=device)
        with progress.task(f"scoring with {name} ({model})", total=len(rows), unit="rows") as bar:
            for start in range(0, len(rows), CHUNK):
                part = rows[start : start + CHUNK]
                values = score([r.document for r in part], [r.summary for r in part])
                for out, value in zip(scores[start : start + CHUNK], values):
                    out[kind.metric] = float(value)
                bar.advance(len(part))
    records = []
    for row, found in zip(rows, scores):
        record: dict[str, Any] = {"id": row.id}
        if row.label is not None:
            record["label"] = row.label
        record["scores"] = {k: (None if math.isnan(v) else v) for k, v in found.items()}
        records.append(record)
    return records


def scores_jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def read_scores(path: str | Path) -> list[dict[str, Any]]:
    """The records of a scores file (``calibench summ score``'s output), each with a label and scores."""
    path = Path(path)
    records = []
    for i, line in enumerate(read_text(path, "scores file").split("\n")):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibenchError(f"{path}: line {i + 1} is not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("scores"), dict):
            raise CalibenchError(f"{path}: line {i + 1} has no 'scores': give a file `calibench summ score` wrote")
        if "label" not in record:
            raise CalibenchError(
                f"{path}: line {i + 1} has no label: a table needs labelled rows (give 'label' 0/1 in the pairs file)"
            )
        record["label"] = _label(record["label"], f"{path}: line {i + 1}")
        records.append(record)
    if not records:
        raise CalibenchError(f"scores file {path} holds no rows")
    labels = {r["label"] for r in records}
    if len(labels) < 2:
        raise CalibenchError(
            f"{path}: every row has label {labels.pop()}: a judge is validated on both consistent (1) and "
            "inconsistent (0) rows"
        )
    return records


def score_table(records: list[dict[str, Any]], seed: int = 0, n_boot: int = 1000) -> list[dict[str, Any]]:
    """Per score (in the file's order): rows scored, ROC-AUC and split-half balanced accuracy with 95% CIs."""
    names = list(dict.fromkeys(k for r in records for k in r["scores"]))
    table = []
    for name in names:
        kept = [(r["scores"][name], r["label"]) for r in records if isinstance(r["scores"].get(name), (int, float))]
        s, y = [float(v) for v, _ in kept], [lab for _, lab in kept]
        entry: dict[str, Any] = {"score": name, "n": len(kept)}
        try:
            auc = auc_with_ci(s, y, n_boot, seed)
            ba = balanced_accuracy_with_ci(s, y, n_boot, seed)
        except CalibenchError as exc:  # too few rows of one class once this score's undefined rows are dropped
            entry["note"] = str(exc)
        else:
            entry.update(auc=auc.value, auc_ci=[auc.low, auc.high], balanced_accuracy=ba.value,
                         balanced_accuracy_ci=[ba.low, ba.high])  # fmt: skip
        table.append(entry)
    return table


def table_markdown(table: list[dict[str, Any]], n_boot: int, seed: int) -> str:
    lines = [
        "| score | n | ROC-AUC [95% CI] | balanced accuracy [95% CI] |",
        "|---|---:|---|---|",
    ]
    for e in table:
        if "auc" not in e:
            lines.append(f"| {e['score']} | {e['n']} | - | - ({e['note']}) |")
            continue
        lo, hi = e["auc_ci"]
        blo, bhi = e["balanced_accuracy_ci"]
        lines.append(f"| {e['score']} | {e['n']} | {e['auc']:.3f} [{lo:.3f}, {hi:.3f}] | "
                     f"{e['balanced_accuracy']:.3f} [{blo:.3f}, {bhi:.3f}] |")  # fmt: skip
    lines.append("")
    lines.append(f"Higher score = consistent (label 1); AUC below 0.5 means the score runs the other way. "
                 f"Balanced accuracy: threshold fitted on one stratified half, scored on the other (seed {seed}); "
                 f"CIs: {n_boot} bootstrap replicates resampled within each label.")  # fmt: skip
    return "\n".join(lines) + "\n"
