"""The recommendation card: why this set, how sure, at what cost (``card.json`` and ``card.md``).

The JSON holds everything (settings, the ranking with every signal value,
the full results, the validation and the paired comparison, seconds per
phase); the Markdown renders the same dict for people, so the two never
disagree.
"""

from __future__ import annotations

from typing import Any

from calibench.core.jsonutil import finite
from calibench.core.text import markdown_table_lines

FORMAT = "calibench.recommend/1"


def card_data(result: Any) -> dict[str, Any]:
    """A JSON-ready dict of a :class:`calibench.predict.recommend.Recommendation`."""
    chosen = result.chosen
    ranking = []
    for unit in result.candidates:
        full = unit.full
        ranking.append(
            {
                "rank": unit.rank,
                "candidate": unit.label,
                "source": unit.name,
                "set_index": unit.set_index,
                "set_id": unit.calib.set_id,
                "signal": finite(unit.signal_value),
                "signal_seconds": round(unit.signal_seconds, 3),
                "evaluated": full is not None,
                "objective": finite(full.objective) if full else None,
                "metrics": {k: finite(v) for k, v in full.metrics.items()} if full else None,
                "full_seconds": round(full.seconds, 3) if full else None,
            }
        )
    validation = result.validation
    return {
        "format": FORMAT,
        "chosen": {
            "candidate": chosen.label,
            "source": chosen.name,
            "set_index": chosen.set_index,
            "set_id": chosen.calib.set_id,
            "objective": finite(chosen.full.objective) if chosen.full else None,
            "metrics": chosen.full.metrics if chosen.full else None,
            "path": "set",
        },
        "objective": result.objective,
        "objective_meaning": (
            "average accuracy" if result.objective == "average acc" else f"-log perplexity of {result.objective}"
        )
        + " (higher is better)",
        "signal": {
            "name": result.signal,
            "sign": result.sign,
            "direction": "higher predicts better" if result.sign > 0 else "lower predicts better",
        },
        "ranking": ranking,
        "validation": {
            k: finite(v) if not isinstance(v, list) else [finite(x) for x in v] for k, v in validation.items()
        }
        if validation
        else None,
        "comparison": result.comparison,
        "cost": result.cost,
        "settings": result.settings,
        "notes": list(result.notes),
    }


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _confidence(data: dict[str, Any]) -> list[str]:
    lines = []
    validation = data["validation"]
    if validation:
        ci = validation.get("ci") or [None, None]
        lines.append(
            f"- The signal's Spearman with {validation.get('outcome', 'the full result')} across "
            f"{validation.get('cells', '?')} grid cells was {_num(validation.get('spearman'), 3)} "
            f"(95% CI {_num(ci[0], 3)} to {_num(ci[1], 3)}); on held-out cells "
            f"{_num(validation.get('held_out'), 3)} (source: {validation.get('study', 'measured grid')})."
        )
    else:
        lines.append(
            "- The signal has no validation for this method here: its ranking is a prior, not a measured "
            "predictor (run `calibench study signals` on a study and pass `--study`)."
        )
    comparison = data["comparison"]
    if comparison:
        low, high = comparison["ci"]
        if comparison["resolved"]:
            verdict = "resolved: the CI excludes zero and p < 0.05"
        elif (low is not None and low > 0) or (high is not None and high < 0):
            verdict = (
                "borderline: the CI excludes zero but p >= 0.05, so the two are not told apart with "
                "confidence on these items"
            )
        else:
            verdict = "not resolved: the CI includes zero, the two are indistinguishable on these items"
        lines.append(
            f"- Best ({comparison['best']}) minus runner-up ({comparison['runner_up']}) in "
            f"{comparison['quantity']}: {_num(comparison['difference'])} (paired bootstrap 95% CI "
            f"{_num(comparison['ci'][0])} to {_num(comparison['ci'][1])}, sign-flip p = "
            f"{_num(comparison['p'], 3)}, {comparison['items']} items): {verdict}."
        )
    else:
        lines.append("- No paired comparison: fewer than two candidates were fully evaluated, or they share no items.")
    return lines


def render_markdown(data: dict[str, Any]) -> str:
    """The card as Markdown, from :func:`card_data`'s dict."""
    settings, cost, chosen = data["settings"], data["cost"], data["chosen"]
    params = ", ".join(f"{k}={v}" for k, v in settings["params"].items()) or "defaults"
    lines = [
        f"# Calibration set recommendation: {settings['model']}, {settings['method']} ({params})\n",
        f"**Chosen: {chosen['candidate']}** (set {chosen['set_id']}, saved in `set/`), "
        f"{data['objective_meaning']}: {_num(chosen['objective'])}.\n",
        "## Why\n",
        f"Candidates were ranked by the cheap signal `{data['signal']['name']}` "
        f"({data['signal']['direction']}); the top ones that fitted the budget were compressed and evaluated in full, "
        "and the best full result was chosen.\n",
        *markdown_table_lines(
            ("rank", "candidate", "set", "signal", "evaluated", "objective", "metrics", "seconds"),
            [
                (
                    row["rank"],
                    row["candidate"],
                    row["set_id"],
                    _num(row["signal"]),
                    "yes" if row["evaluated"] else "no",
                    _num(row["objective"]),
                    ", ".join(f"{k}: {_num(v)}" for k, v in (row["metrics"] or {}).items()) or "-",
                    _num(row["full_seconds"], 3),
                )
                for row in data["ranking"]
            ],
        ),
    ]
    lines += ["", "## How sure\n", *_confidence(data), ""]
    estimate = cost["estimate"]
    lines += [
        "## What it cost\n",
        f"- building candidates: {_num(cost['build_s'], 3)} s; cost probe: {_num(cost['probe_s'], 3)} s; "
        f"signals: {_num(cost['signals_s'], 3)} s; full evaluations: {_num(cost['full_s'], 3)} s "
        f"({len(cost['full_runs'])} run(s)).",
        f"- total {_num(cost['total_s'], 3)} s of a {_num(cost['budget_s'], 3)} s budget "
        f"({_num(100 * cost['budget_used'], 3)}%).",
        f"- one full run was estimated at {_num(estimate['full_s'], 3)} s before the first one "
        f"(compression {_num(estimate['compress_s'], 3)} s from {estimate['k_layers']} of {estimate['layers']} layers "
        f"in {_num(estimate['k_layers_compress_s'], 3)} s; evaluation {_num(estimate['evaluate_s'], 3)} s), "
        f"and measured at {_num(cost['measured_full_s'], 3)} s.",
        "",
    ]
    if data["notes"]:
        lines += ["## Notes\n", *[f"- {note}" for note in data["notes"]], ""]
    lines += ["## Settings\n", "```", *[f"{k}: {v}" for k, v in settings.items()], "```", ""]
    return "\n".join(lines)
