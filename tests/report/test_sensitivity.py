"""Source sensitivity with in-domain fitting averaged out: point values against a direct computation, CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from calibench.report.sensitivity import AVERAGED, sensitivity_tables, spreads, windows_by_domain

DOMAINS = ("ppl:code", "ppl:wiki")


def _items(effects: dict[str, dict[str, dict[str, float]]], n_windows: int = 24, seed: int = 0) -> pd.DataFrame:
    """Per-window NLLs: window difficulty shared by every cell, plus a method x source x domain effect."""
    rng = np.random.default_rng(seed)
    base = {d: rng.normal(3.0, 0.3, n_windows) for d in DOMAINS}
    rows = []
    for method, by_source in effects.items():
        for source, by_domain in by_source.items():
            for set_index in range(3):
                set_shift = rng.normal(0, 0.01)
                for d in DOMAINS:
                    for w in range(n_windows):
                        nll = base[d][w] + by_domain[d] + set_shift + rng.normal(0, 0.02)
                        rows.append(
                            {
                                "key": f"{method}-{source}-{set_index}",
                                "method": method,
                                "source": source,
                                "set_index": set_index,
                                "perturbation": "",
                                "task": d,
                                "item": f"window:{w}",
                                "nll": nll,
                                "tokens": 255.0,
                            }
                        )
    return pd.DataFrame(rows)


def test_point_spreads_match_a_direct_computation():
    # an in-domain fit only: wiki helps wiki, code helps code, by the same amount, so the average cancels it
    fit = {"wiki": {"ppl:wiki": 0.0, "ppl:code": 0.3}, "code": {"ppl:wiki": 0.3, "ppl:code": 0.0}}
    items = _items({"gptq": fit})
    windows = windows_by_domain(items, "gptq", list(DOMAINS))
    assert windows is not None
    got = spreads(windows)
    for d in [*DOMAINS, AVERAGED]:
        domains = DOMAINS if d == AVERAGED else (d,)
        cell = items[items.task.isin(domains)].groupby(["source", "set_index", "task"]).nll.mean()
        per_cell = cell.groupby(["source", "set_index"]).mean()  # mean over domains of each domain's log-ppl
        means = per_cell.groupby("source").mean()
        stds = per_cell.groupby("source").std(ddof=1)
        assert abs(got[d][0] - (means.max() - means.min())) < 1e-12
        assert abs(got[d][1] - stds.mean()) < 1e-12
    assert got["ppl:wiki"][0] > 0.25 and got[AVERAGED][0] < 0.05  # the fit shows per domain and cancels on average


def test_method_difference_is_resolved_only_where_it_exists():
    fit = {"wiki": {"ppl:wiki": 0.0, "ppl:code": 0.3}, "code": {"ppl:wiki": 0.3, "ppl:code": 0.0}}
    broad = {"wiki": {"ppl:wiki": 0.0, "ppl:code": 0.0}, "code": {"ppl:wiki": 0.2, "ppl:code": 0.2}}
    items = _items({"gptq": fit, "wanda": broad, "zz": broad})
    tables = sensitivity_tables(items, n_boot=300)
    assert tables is not None
    pairs = tables[1].frame.set_index(["method A", "method B"])["CI excludes 0"]
    assert pairs[("gptq", "wanda")] == "yes"  # wanda's code sets are worse everywhere; gptq's fit averages out
    assert pairs[("wanda", "zz")] == "no"  # same effects: the CI covers 0
    again = sensitivity_tables(items, n_boot=300)
    assert again is not None and again[0].frame.equals(tables[0].frame)  # seeded


def test_plot_draws_one_panel_per_domain_and_the_mean(tmp_path):
    from calibench.report.sensitivity import plot_sensitivity

    fit = {"wiki": {"ppl:wiki": 0.0, "ppl:code": 0.3}, "code": {"ppl:wiki": 0.3, "ppl:code": 0.0}}
    items = _items({"gptq": fit, "wanda": fit})
    found = {m: windows_by_domain(items, m, list(DOMAINS)) for m in ("gptq", "wanda")}
    path = plot_sensitivity(found, tmp_path / "s.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _accuracy_items(p_correct: dict[str, dict[str, float]], n_items: int = 400, seed: int = 1) -> pd.DataFrame:
    """0/1 accuracies on one task: an item difficulty shared by every cell, a method x source accuracy."""
    rng = np.random.default_rng(seed)
    easy = rng.uniform(size=n_items)
    rows = []
    for method, by_source in p_correct.items():
        for source, p in by_source.items():
            for set_index in range(3):
                noise = rng.uniform(size=n_items) < 0.05  # a few items flip from set to set
                correct = (easy < p) ^ noise
                rows += [
                    {
                        "key": f"{method}-{source}-{set_index}",
                        "method": method,
                        "source": source,
                        "set_index": set_index,
                        "perturbation": "",
                        "task": "lambada_openai",
                        "item": f"doc:{i}",
                        "metrics.acc": float(correct[i]),
                        "loglikelihood": -2.0 * easy[i] - (1.0 - p) + 0.01 * set_index,
                    }
                    for i in range(n_items)
                ]
    return pd.DataFrame(rows)


def test_accuracy_spreads_on_one_task_match_a_direct_computation():
    from calibench.report.sensitivity import ACCURACY

    items = _accuracy_items(
        {
            "gptq": {"wiki": 0.40, "code": 0.38},
            "wanda": {"wiki": 0.40, "code": 0.25},
            "zz": {"wiki": 0.40, "code": 0.25},
        }
    )
    windows = windows_by_domain(items, "wanda", ["lambada_openai"], ACCURACY)
    assert windows is not None
    got = spreads(windows)
    assert list(got) == ["lambada_openai"]  # one task: nothing to average
    per_cell = items[items.method == "wanda"].groupby(["source", "set_index"])["metrics.acc"].mean()
    means = per_cell.groupby("source").mean()
    assert abs(got["lambada_openai"][0] - (means.max() - means.min())) < 1e-12
    assert abs(got["lambada_openai"][1] - per_cell.groupby("source").std(ddof=1).mean()) < 1e-12
    tables = sensitivity_tables(items, ["lambada_openai"], ACCURACY, n_boot=300)
    assert tables is not None
    per_method, pairs = tables[0].frame, tables[1].frame
    assert "worst/best ppl" not in per_method and len(per_method) == 3  # one row a method, no averaged row
    assert "across-source spread (accuracy) [95% CI]" in per_method
    excluded = pairs.set_index(["method A", "method B"])["CI excludes 0"]
    assert excluded[("gptq", "wanda")] == "yes"  # 0.02 against 0.15 of 400 shared items
    assert excluded[("wanda", "zz")] == "no"
    # the target's log-likelihood: continuous, the same spreads by the same code
    from calibench.report.sensitivity import TARGET_LL

    ll = spreads(windows_by_domain(items, "gptq", ["lambada_openai"], TARGET_LL))["lambada_openai"]
    assert abs(ll[0] - 0.02) < 1e-9 and abs(ll[1] - 0.01) < 1e-9  # sources 1 - p apart; sets 0.01 a step
    # the ppl default finds no perplexity domains in an accuracy-only frame
    assert sensitivity_tables(items, n_boot=50) is None


def test_accuracy_plot_draws_one_panel(tmp_path):
    from calibench.report.sensitivity import ACCURACY, plot_sensitivity

    items = _accuracy_items({"gptq": {"wiki": 0.4, "code": 0.3}})
    found = {"gptq": windows_by_domain(items, "gptq", ["lambada_openai"], ACCURACY)}
    path = plot_sensitivity(found, tmp_path / "a.png", ACCURACY)
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_models_are_measured_apart_and_labelled():
    from calibench.report.sensitivity import LOG_PPL, per_model_tables

    fit = {"wiki": {"ppl:wiki": 0.0, "ppl:code": 0.3}, "code": {"ppl:wiki": 0.3, "ppl:code": 0.0}}
    broad = {"wiki": {"ppl:wiki": 0.0, "ppl:code": 0.0}, "code": {"ppl:wiki": 0.2, "ppl:code": 0.2}}
    one = _items({"gptq": fit, "wanda": broad}, seed=0).assign(model="m1")
    two = _items({"gptq": broad, "wanda": fit}, seed=3).assign(model="m2")  # the same item ids, other effects
    tables = per_model_tables(pd.concat([one, two], ignore_index=True), list(DOMAINS), LOG_PPL)
    assert tables is not None
    rows, pairs = tables[0].frame, tables[1].frame
    assert list(rows.columns)[0] == "model" and set(rows.model) == {"m1", "m2"}
    for model, alone in (("m1", one), ("m2", two)):
        expected = sensitivity_tables(alone, list(DOMAINS))
        assert expected is not None
        got = rows[rows.model == model].drop(columns="model").reset_index(drop=True)
        assert got.equals(expected[0].frame)  # each model's spreads are its own, not a mixture
    assert set(pairs.model) == {"m1", "m2"} and len(pairs) == 2
