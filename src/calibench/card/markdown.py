"""Rendering a datasheet as Markdown: the card people read, and the README of an exported dataset.

The text opens with a YAML header in the Hugging Face dataset-card format
(``pretty_name``, ``tags``), so the same file is a valid hub README once
``push_to_hub`` adds its ``dataset_info`` to that header.  Nothing in it
depends on the time or the machine: the same set gives the same card.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from calibench.card.datasheet import Contamination, Datasheet
from calibench.core.text import escape_cell, markdown_table_lines

TAGS = ("calibench", "calibration-data", "llm-compression")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    """A table's lines; a cell's ``|`` escaped and its line breaks as spaces."""
    return markdown_table_lines(header, rows, functools.partial(escape_cell, newlines=True))


def _num(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _json(value: Any) -> str:
    return "`" + json.dumps(value, sort_keys=True, ensure_ascii=False) + "`" if value else "-"


def _generator_summary(generator: dict[str, Any] | None) -> str:
    """The generator record without its per-window bookkeeping (which the manifest keeps in full)."""
    if not generator:
        return "-"
    return _json({k: v for k, v in generator.items() if not isinstance(v, list)})


def provenance(sheet: Datasheet) -> list[str]:
    m = sheet.manifest
    src, sampling = m.source, m.sampling
    rows = [
        ("set id", f"`{m.set_id}`"),
        ("tokens sha256", f"`{m.tokens_sha256}`"),
        ("source", f"{src.name} ({src.kind}), split {src.split}"),
        ("recipe", _json(src.spec)),
        ("sampling", f"{sampling.mode}, bos={sampling.bos}, set {sampling.set_index + 1} of {sampling.num_sets}"),
        ("seed", m.seed),
        ("shape", f"{m.n} windows x {m.seq_len} tokens ({sheet.num_tokens:,} real tokens)"),
        (
            "tokenizer",
            f"{m.tokenizer.get('name') or '-'} (vocab {m.tokenizer.get('vocab_size')}, "
            f"sha256 {str(m.tokenizer.get('vocab_sha256', ''))[:16]})",
        ),
        ("generator", _generator_summary(m.generator)),
        ("parents", ", ".join(f"`{p}`" for p in m.parents) or "-"),
        ("source fingerprint", f"`{src.fingerprint}`" if src.fingerprint else "-"),
        ("written by", f"calibench {m.calibench_version}"),
    ]
    return [
        "## Provenance",
        "",
        *_table(("field", "value"), rows),
        "",
        "The manifest (`manifest.json` of the set) holds every window's origin; the set id covers the tokens "
        "and every field above, so an edited set no longer loads.",
    ]


def statistics(sheet: Datasheet) -> list[str]:
    s = sheet.statistics
    if s is None:
        return []
    rows = [
        ("perplexity" + (f" under {sheet.model}" if sheet.model else ""), _num(s.get("perplexity"), ",.2f")),
        ("vocabulary coverage", _num(s.get("vocab_coverage"), ".2%")),
        ("n-gram diversity (n = 1..4)", _num(s.get("ngram_diversity"), ".3f")),
        ("Zipf coefficient", _num(s.get("zipf_coefficient"), ".3f")),
        ("repetition rate (4-grams)", _num(s.get("repetition_rate"), ".2%")),
        ("mean document length (tokens)", _num(s.get("mean_document_length"), ",.1f")),
    ]
    out = [
        "## Statistics",
        "",
        *_table(("statistic", "value"), rows),
        "",
        "Definitions: `calibench.data.stats.text` (the self-calibration paper's set statistics).",
    ]
    if "statistics" in sheet.notes:
        out += ["", f"Not measured: {sheet.notes['statistics']}."]
    return out


def activation(sheet: Datasheet) -> list[str]:
    out = ["## Activation metrics", ""]
    a = sheet.activation
    if a is None:
        return out + [f"Not measured: {sheet.notes.get('activation', 'no model given')}."]
    rows = [
        ("reference", f"`{a['pool']}` ({a['pool_size']} windows; {a['rows_in_pool']} of this set's rows are in it)"),
        (
            "coverage (mean distance from a reference window to its nearest set window; lower: better)",
            _num(a["coverage"], ".4f"),
        ),
        ("diversity (mean pairwise distance among set windows)", _num(a["diversity"], ".4f")),
        (
            "embedding",
            f"per-layer sequence-mean activations of {sheet.model}, L2-normalised, concatenated, "
            f"random projection to {a['projection_dim']} dims (seed {a['projection_seed']})",
        ),
    ]
    return out + _table(("metric", "value"), rows)


def _declared_line(benchmark: str, sources: list[str], found: dict[str, Any]) -> str:
    hit = found.get(benchmark)
    measured = (
        f"; measured: {hit.items_hit} of {hit.checkable} checkable items overlap"
        if hit is not None
        else "; no offline copy of it here to measure"
    )
    return (
        f"- **{benchmark}**: source {', '.join(sources)} is made of {benchmark} items (contaminated by "
        f"construction): do not evaluate a model calibrated on this set on {benchmark}{measured}."
    )


def contamination(c: Contamination | None, note: str = "") -> list[str]:
    out = ["## Contamination", ""]
    if c is None:
        return out + [f"Not checked: {note or 'off'}."]
    found = {o.benchmark: o for o in c.overlaps}
    out.append(
        f"Overlap with evaluation data, as {c.n}-grams of lower-cased words (punctuation dropped; the "
        f"GPT-3 convention): an item counts when any of its {c.n}-grams occurs in the set. "
        f"{len(c.overlaps)} benchmarks checked."
    )
    flagged = c.flagged()
    if flagged:
        verdict = f"**Flagged: {', '.join(flagged)}.**"
    elif c.overlaps:
        verdict = "**No overlap found.**"
    else:
        verdict = "**Nothing checked**: no evaluation data could be read on this machine (see below)."
    out += ["", verdict]
    if c.declared:
        out += ["", *[_declared_line(b, s, found) for b, s in c.declared.items()]]
    hits = sorted((o for o in c.overlaps if o.items_hit), key=lambda o: (-o.item_share, o.benchmark))
    if hits:
        rows = [
            (
                o.benchmark,
                o.kind,
                f"{o.items_hit} / {o.checkable}",
                f"{o.item_share:.2%}",
                f"{o.windows_hit} / {o.windows}",
                f"{o.window_share:.2%}",
            )
            for o in hits
        ]
        out += [
            "",
            *_table(
                (
                    "benchmark",
                    "kind",
                    "items overlapping / checkable",
                    "item share",
                    "set windows overlapping",
                    "window share",
                ),
                rows,
            ),
        ]
        out += [
            "",
            "Top overlaps (the item in the benchmark's offline copy, its n-grams found in the set, the set "
            "windows holding them, the first one):",
            "",
        ]
        for o in hits:
            for h in o.top:
                windows = ", ".join(str(w) for w in h.windows[:8]) + (" ..." if len(h.windows) > 8 else "")
                out.append(
                    f"- {o.benchmark} {h.label}: {h.shared} n-grams, window{'s' if len(h.windows) > 1 else ''} "
                    f'{windows}: "{h.example}"'
                )
    clean = [o.benchmark for o in c.overlaps if not o.items_hit]
    if clean:
        out += ["", f"No overlap with: {', '.join(clean)}."]
    unchecked = [o.benchmark for o in c.overlaps if not o.checkable]
    if unchecked:
        out += ["", f"Items too short for {c.n}-grams (nothing checked): {', '.join(unchecked)}."]
    by_reason: dict[str, list[str]] = {}
    for benchmark, reason in c.skipped.items():
        by_reason.setdefault(reason, []).append(benchmark)
    for reason, names in by_reason.items():
        out += ["", f"Not checked ({reason}): {', '.join(names)}."]
    return out


def render(sheet: Datasheet, extra: list[str] | None = None) -> str:
    """The card as Markdown; ``extra`` lines (an export's usage notes) go before the closing line."""
    m = sheet.manifest
    header = ["---", f"pretty_name: calibration set {m.set_id}", "tags:", *[f"- {t}" for t in TAGS], "---", ""]
    intro = [
        f"# Calibration set `{m.set_id}`",
        "",
        f"{m.n} windows of {m.seq_len} tokens from **{m.source.name}** ({m.source.kind}, split "
        f"{m.source.split}) for the tokenizer of {m.tokenizer.get('name') or 'an unnamed model'}: calibration "
        "data for post-training quantization and pruning (GPTQ, AWQ, SmoothQuant, SparseGPT, Wanda, ...).",
        "",
    ]
    body = (
        provenance(sheet)
        + [""]
        + statistics(sheet)
        + [""]
        + activation(sheet)
        + [""]
        + contamination(sheet.contamination, sheet.notes.get("contamination", ""))
    )
    tail = ["", *(extra or []), "", f"Card written by calibench {m.calibench_version} (`calibench data card`)."]
    return "\n".join(header + intro + body + tail).replace("\n\n\n", "\n\n") + "\n"
