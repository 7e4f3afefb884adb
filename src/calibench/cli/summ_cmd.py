"""``calibench summ``: the summarization judges, validated once per machine as their own step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from calibench.cli import options
from calibench.cli.derive import Group, with_options
from calibench.core.console import console
from calibench.core.fsutil import atomic_write_bytes, check_output_file
from calibench.summarize.heldout import NEGATED, all_validities, results_markdown, validate_judges
from calibench.summarize.judges import JUDGES
from calibench.summarize.pairsets import build_pairs, check_pairset, pairs_jsonl, parse_pairsets
from calibench.summarize.score import (
    LEXICAL,
    check_judges,
    parse_judges,
    read_pairs,
    read_scores,
    score_pairs,
    score_table,
    scores_jsonl,
    table_markdown,
)
from calibench.summarize.settings import (
    SummPairsSettings,
    SummScoreSettings,
    SummTableSettings,
    SummValidateSettings,
)
from calibench.summarize.validate import cached_results, cached_validation

summ_app = typer.Typer(help="Summarization judges: validate them on labelled pairs datasets (summ validate, summ "
                       "pairs) or on your own labelled pairs (summ score, summ table), list what is validated.",
                       no_args_is_help=True)  # fmt: skip


def validate_command(
    *,
    judge: str,
    pairs: str,
    judge_model: str | None,
    style: str,
    chat: str,
    limit: int | None,
    force: bool,
    offline: bool | None,
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """Validate the judges on labelled pairs datasets: ROC-AUC and balanced accuracy with 95% CIs, cached per judge
    for evaluations and reports (on fsp also the Factual-Summary-Pairs pair accuracy a summ: task reports)."""
    results = validate_judges(judge, judge_model, data=parse_pairsets(pairs), style=style, chat=chat,  # type: ignore[arg-type]
                              limit=limit, force=force, offline=bool(offline), batch_size=batch_size, dtype=dtype,
                              device=device)  # fmt: skip
    typer.echo(results_markdown(results), nl=False)
    con = console()
    for r in results:
        if r.judge != LEXICAL and r.validity.dataset == "fsp":
            fsp_pairs = None if limit is None else limit // 2
            found = cached_validation(r.identity, fsp_pairs)
            if found is not None:
                con.print(_line({**found, "cached": r.cached}), highlight=False, soft_wrap=True)


def pairs_command(
    name: str = typer.Argument(..., help="The dataset: fsp, xsum-swap, xsum-corrupt or multilexsum-long."),
    *,
    limit: int | None,
    seed: int,
    out: Path,
    force: bool,
) -> None:
    """Write a labelled pairs dataset (id, document, summary, label, kind) that `calibench summ score` reads."""
    check_pairset(name)
    check_output_file(out, "pairs.jsonl", force=force)
    rows = build_pairs(name, seed=seed, limit=limit)
    atomic_write_bytes(out, pairs_jsonl(rows))
    ones = sum(r["label"] for r in rows)
    console().print(f"{name}: {len(rows)} rows ({ones} consistent, {len(rows) - ones} not) -> {out}",
                    highlight=False, soft_wrap=True)  # fmt: skip


def score_command(
    pairs: Path = typer.Argument(
        ..., help='JSON lines, one {"id", "document", "summary", "label": 0/1 (optional)} per row.'
    ),
    *,
    judges: str,
    limit: int | None,
    out: Path,
    force: bool,
    offline: bool | None,
    batch_size: int,
    dtype: str,
    device: str,
) -> None:
    """Score your own (document, summary) pairs with every judge; one JSON line per row with its id and label."""
    check_output_file(out, "scores.jsonl", force=force)
    rows = read_pairs(pairs, limit)  # the whole file checked before any model loads
    names = parse_judges(judges)
    check_judges(names, bool(offline))
    records = score_pairs(rows, names, batch_size=batch_size, dtype=dtype, device=device)
    atomic_write_bytes(out, scores_jsonl(records))
    labelled = sum("label" in r for r in records)
    console().print(f"scored {len(records)} rows ({labelled} labelled) with {', '.join(names)} -> {out}",
                    highlight=False, soft_wrap=True)  # fmt: skip


def table_command(
    scores: Path = typer.Argument(..., help="A scores file with labels, as `calibench summ score` writes it."),
    *,
    bootstrap: int,
    seed: int,
    out: Path | None,
    force: bool,
) -> None:
    """Per score of a labelled scores file: rows, ROC-AUC and split-half balanced accuracy with bootstrap 95% CIs."""
    if out is not None:
        check_output_file(out, "table.md", force=force)
    records = read_scores(scores)
    table = score_table(records, seed=seed, n_boot=bootstrap)
    text = table_markdown(table, bootstrap, seed)
    typer.echo(text, nl=False)
    if out is not None:
        body = json.dumps(table, indent=2) + "\n" if out.suffix == ".json" else text
        atomic_write_bytes(out, body.encode("utf-8"))


def _describe(identity: dict[str, Any]) -> str:
    if set(identity) == {"scorer"}:
        negated = " (negated: higher = consistent)" if identity["scorer"] in NEGATED else ""
        return f"lexical {identity['scorer']}{negated}"
    if identity.get("scorer") == "harim_plus":
        return f"harim ({identity.get('judge')}, style {identity.get('style')}, {'chat' if identity.get('chat') else 'plain'} prompt)"  # noqa: E501
    return f"nli ({identity.get('nli')})"


def _line(result: dict[str, Any]) -> str:
    how = "cached" if result.get("cached") else f"{result.get('seconds', 0):.0f} s"
    part = f", first {result['limit']} pairs only" if result.get("limit") else ""
    return (f"{_describe(result.get('scorer', {}))}: accuracy {result['accuracy']:.3f} on {result['pairs']} "
            f"Factual-Summary-Pairs ({result['ties']} ties{part}; 0.5 is chance), {how} "
            f"-> {result['path']}")  # fmt: skip


def judges_command() -> None:
    """List the judges validated on this machine (cached results that summ: tasks report)."""
    con = console()
    found = cached_results()
    for result in found:
        con.print(_line({**result, "cached": True}), highlight=False, soft_wrap=True)
    for validity in all_validities():  # the AUC on each labelled dataset, per judge identity
        con.print(f"{_describe(validity.identity)}: {validity.text()}", highlight=False, soft_wrap=True)
    seen = {r.get("scorer", {}).get("scorer") for r in found if not r.get("limit")}
    for name in JUDGES.names():
        kind = JUDGES.get(name)
        if kind.metric not in seen:
            con.print(f"{name}: not validated on this machine; run 'calibench summ validate --judge {name}' "
                      f"(~{kind.minutes()} min)", highlight=False, soft_wrap=True)  # fmt: skip


summ_app.command("validate")(
    with_options(
        validate_command,
        [
            options.common("offline", "batch_size", "dtype", "device", command="summ validate"),
            options.common(
                "force", command="summ validate", detail={"force": "Here: validate again even when a result is cached."}
            ),
            Group(SummValidateSettings),
        ],
    )
)
summ_app.command("judges")(judges_command)
summ_app.command("pairs")(
    with_options(
        pairs_command,
        [
            options.common(
                "out",
                "force",
                "seed",
                command="summ pairs",
                required=("out",),
                detail={
                    "out": "The pairs file (JSON lines) to write.",
                    "seed": "Seeds which sentences are picked and how they are corrupted (fsp has no choice to seed).",
                },
            ),
            Group(SummPairsSettings),
        ],
    )
)
summ_app.command("score")(
    with_options(
        score_command,
        [
            options.common(
                "out",
                "force",
                "offline",
                "batch_size",
                "dtype",
                "device",
                command="summ score",
                required=("out",),
                detail={"out": "The scores file (JSON lines) to write."},
            ),
            Group(SummScoreSettings),
        ],
    )
)
summ_app.command("table")(
    with_options(
        table_command,
        [
            options.common(
                "out",
                "force",
                "seed",
                command="summ table",
                detail={
                    "out": "Also write the table: Markdown, or JSON when the name ends in .json.",
                    "seed": "Seeds the half split and the bootstrap.",
                },
            ),
            Group(SummTableSettings),
        ],
    )
)
