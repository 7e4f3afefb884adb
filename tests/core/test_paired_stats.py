"""Paired statistics of the study report: bootstrap CI, sign-flip test, Holm, sample sizes, hierarchical CI."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from calibench.core import stats as paired
from calibench.core.errors import CalibenchError
from conftest import corpus_text

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]


# ----------------------------------------------------------------- paired bootstrap


def flat_sections(directory, frame, out=None):
    """The paired report sections as ([(heading, table)], [plot paths])."""
    from calibench.report.sections import paired_sections

    found = paired_sections(directory, frame, out)
    return [(s.title, t.frame) for s in found for t in s.tables], [p for s in found for p in s.plots]


def loop_bootstrap(a, b, n_boot, seed, level=0.95):
    """An explicit one-replicate-at-a-time implementation to check the vectorised one against."""
    rng = np.random.default_rng(seed)
    n = len(a)
    means = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        means.append(sum(a[i] - b[i] for i in idx) / n)
    means.sort()
    return (*np.quantile(means, [(1 - level) / 2, (1 + level) / 2]), float(np.std(means, ddof=1)))


def test_bootstrap_ci_equals_an_explicit_loop():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=40), rng.normal(size=40)
    ci = paired.paired_bootstrap_ci(a, b, n_boot=500, seed=7)
    low, high, stderr = loop_bootstrap(a, b, 500, 7)
    assert ci.estimate == pytest.approx(float(np.mean(a - b)))
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))
    assert ci.stderr == pytest.approx(stderr)  # the replicates' std: the summarization tables' stderr
    assert paired.paired_bootstrap_ci(a - b, n_boot=500, seed=7) == ci  # differences given directly
    assert paired.paired_bootstrap_ci(a, b, n_boot=500, seed=7) == ci  # deterministic


def test_identical_conditions_give_a_zero_ci_and_p_one():
    a = np.random.default_rng(0).uniform(size=30)
    ci = paired.paired_bootstrap_ci(a, a.copy())
    assert (ci.estimate, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert paired.sign_flip_pvalue(a, a.copy()) == 1.0
    assert paired.sign_flip_pvalue(a[:8], a[:8].copy()) == 1.0  # exact branch too


def test_a_large_constant_shift_gives_the_smallest_p_and_a_ci_around_it():
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    b = a - 5.0 + rng.normal(0, 0.01, size=200)
    ci = paired.paired_bootstrap_ci(a, b)
    assert ci.low < 5.0 < ci.high and ci.high - ci.low < 0.01
    assert paired.sign_flip_pvalue(a, b, n_perm=999) == pytest.approx(1 / 1000)
    # exact: only the identity and the all-flipped pattern reach the observed |mean|
    assert paired.sign_flip_pvalue(a[:10], b[:10]) == pytest.approx(2 / 2**10)


# ----------------------------------------------------------------- sign-flip test


def test_exact_sign_flip_p_equals_enumerating_every_pattern():
    d = np.array([0.9, -0.2, 0.5, 0.4, 0.1, 0.7])
    observed = abs(d.mean())
    hits = sum(
        abs(np.mean(np.array(signs) * d)) >= observed - 1e-12 for signs in itertools.product([1, -1], repeat=d.size)
    )
    assert paired.sign_flip_pvalue(d) == pytest.approx(hits / 2**d.size)
    assert 0 < hits < 2**d.size
    # Monte Carlo approaches the exact value and is deterministic with its seed
    mc = paired.sign_flip_pvalue(d, exact_max=0, n_perm=20000, seed=3)
    assert mc == paired.sign_flip_pvalue(d, exact_max=0, n_perm=20000, seed=3)
    assert mc == pytest.approx(hits / 2**d.size, abs=0.01)


def test_ties_count_as_ties():
    d = np.array([1.0, -1.0, 1.0, -1.0])  # observed mean 0: every pattern is at least as extreme
    assert paired.sign_flip_pvalue(d) == 1.0


# ----------------------------------------------------------------- Holm


def test_holm_matches_a_hand_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    adjusted = paired.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert paired.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    with_nan = paired.holm([0.01, float("nan"), 0.02])
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1]) and with_nan[2] == pytest.approx(0.02)
    assert paired.holm([]).size == 0


# ----------------------------------------------------------------- sample sizes


def test_items_and_sets_needed_match_a_hand_calculation():
    z = 1.959963984540054 + 0.8416212335729143  # z_.975 + z_.8
    # ((2.8016 * 0.5 / 0.1)^2 = 196.22 -> 197
    assert paired.items_needed(0.1, 0.5) == math.ceil((z * 0.5 / 0.1) ** 2) == 197
    assert paired.items_needed(-0.1, 0.5) == 197  # the sign does not matter
    assert paired.items_needed(0.0, 0.5) == math.inf
    # (2.8016^2 * (0.02^2 + 0.03^2) / 0.01^2 = 102.03 -> 103
    assert paired.sets_needed(0.01, 0.02, 0.03) == math.ceil(z**2 * (0.02**2 + 0.03**2) / 0.01**2) == 103
    assert math.isnan(paired.sets_needed(0.01, float("nan"), 0.03))


# ----------------------------------------------------------------- hierarchical CI


def _sets(k, n, set_sd, item_sd=1.0, seed=0):
    rng = np.random.default_rng(seed)
    items = rng.normal(0, item_sd, size=n)  # shared item difficulty
    return rng.normal(0, set_sd, size=(k, 1)) + items + rng.normal(0, 0.3, size=(k, n))


def width(ci):
    return ci.high - ci.low


def test_hierarchical_ci_is_narrower_with_more_items_and_wider_with_more_set_variance():
    few, many = _sets(4, 50, 0.02), _sets(4, 2000, 0.02)
    assert width(paired.hierarchical_bootstrap_ci(many)) < 0.5 * width(paired.hierarchical_bootstrap_ci(few))
    calm, noisy = _sets(4, 300, 0.05), _sets(4, 300, 1.0)
    assert width(paired.hierarchical_bootstrap_ci(noisy)) > 2 * width(paired.hierarchical_bootstrap_ci(calm))
    ci = paired.hierarchical_bootstrap_ci(calm)
    assert ci.low <= ci.estimate <= ci.high and ci.estimate == pytest.approx(calm.mean())
    assert paired.hierarchical_bootstrap_ci(calm, seed=0) == paired.hierarchical_bootstrap_ci(calm, seed=0)
    assert paired.hierarchical_bootstrap_ci(calm, seed=1) != paired.hierarchical_bootstrap_ci(calm, seed=0)


def test_hierarchical_ci_counts_the_item_variance_the_set_std_cannot_see():
    """Sets that agree on shared items: their std is tiny, the items still make the mean uncertain."""
    scores = _sets(5, 100, 0.0, item_sd=1.0, seed=4)
    set_means = scores.mean(axis=1)
    naive = 2 * 1.96 * set_means.std(ddof=1) / math.sqrt(5)
    shared = paired.hierarchical_bootstrap_ci(scores, shared_items=True)
    assert width(shared) > 3 * naive
    nested = paired.hierarchical_bootstrap_ci(list(scores), shared_items=False)  # independent items per set
    assert width(nested) < width(shared)  # item noise averages out across sets only when items are not shared


def test_hierarchical_ci_refuses_bad_input():
    with pytest.raises(CalibenchError, match="same items"):
        paired.hierarchical_bootstrap_ci([np.ones(3), np.ones(4)])
    with pytest.raises(CalibenchError, match="non-finite"):
        paired.paired_bootstrap_ci([1.0, float("nan")], [0.0, 0.0])
    with pytest.raises(CalibenchError, match="same items"):
        paired.paired_bootstrap_ci([1.0, 2.0], [0.0])


# ----------------------------------------------------------------- end to end


def test_study_report_has_paired_tables_equal_to_a_direct_computation(tmp_path, tiny_model_dir):
    from calibench.report.frame import load_frame
    from calibench.report.sections import PAIRED_HEADING, SOURCE_CI_HEADING
    from calibench.study import run_study
    from calibench.study.store import Store

    train, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(60, seed=7)))
    spec = tmp_path / "s.yaml"
    spec.write_text(f"""name: tiny
models: [{tiny_model_dir}]
methods:
  - name: wanda
    params: {{sparsity: 0.5}}
sources:
  - name: {train}
    sets: 2
  - name: random-vocab
    sets: 2
n: [4]
seq_len: [32]
eval:
  tasks: [ppl:{heldout}]
  ppl_seq_len: 32
  ppl_max_windows: 4
""")
    out = tmp_path / "out"
    run_study(spec, out, progress=False)
    from calibench.report.study import write_report

    report = write_report(out)
    md = report.markdown.read_text()
    assert PAIRED_HEADING in md and SOURCE_CI_HEADING in md
    assert any(p.name == "paired_differences.png" for p in report.plots)

    # the direct computation: each source's per-window NLL averaged over its sets, then paired over windows
    frame, _, _ = load_frame(out)
    task = f"ppl:{heldout}"
    store = Store(out)
    samples = store.samples(task)
    store.close()
    cells = frame[(frame.method != "dense") & (frame.task == task)][["key", "source"]].drop_duplicates()
    per_set = {}
    for source, part in cells.groupby("source"):
        rows = [samples[(key, task)] for key in part.key]
        ids = sorted(rows[0])
        per_set[source] = np.array([[r[i]["nll"] for i in ids] for r in rows])
    per_source = {source: matrix.mean(axis=0) for source, matrix in per_set.items()}
    a, b = sorted(per_source)
    d = per_source[a] - per_source[b]
    decision = paired.source_difference(per_set[a], per_set[b])  # two sets each: sets and items random

    sections, _ = flat_sections(out, frame[frame.perturbation == ""])
    pairs = dict(sections)[PAIRED_HEADING]
    assert len(pairs) == 1
    row = pairs.iloc[0]
    assert (row["source A"], row["source B"], row["items"]) == (a, b, 4)
    assert row["difference (A-B)"] == pytest.approx(d.mean())
    assert (row["CI low"], row["CI high"]) == (pytest.approx(float(decision.low)), pytest.approx(float(decision.high)))
    assert row["p"] == pytest.approx(float(decision.p)) and row["scope"] == "sources"
    assert row["p (these sets)"] == pytest.approx(paired.sign_flip_pvalue(d))  # 4 windows: exact over 16 patterns
    assert row["p (Holm)"] == pytest.approx(row["p"])  # a family of one
    assert row["ppl ratio (A/B)"] == pytest.approx(math.exp(d.mean()))
    # mean log-ppl: the mean over sets of each set's log perplexity, as the frame records it
    ppl = frame[(frame.method != "dense") & (frame.task == task) & (frame.metric == "perplexity")]
    for source, mean in ((a, row["mean A"]), (b, row["mean B"])):
        assert mean == pytest.approx(np.log(ppl[ppl.source == source].value).mean(), rel=1e-5)
    assert f"| {row['model']} | {row['method']} |" in md and f"{row['difference (A-B)']:.4f}" in md
    cis = dict(sections)[SOURCE_CI_HEADING].set_index("source")
    assert set(cis.index) == {a, b} and (cis["sets"] == 2).all()
    assert (cis["CI low"] <= cis["mean"]).all() and (cis["mean"] <= cis["CI high"]).all()


def test_no_paired_sections_with_a_single_source(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                "key": "k",
                "model": "m",
                "method": "wanda",
                "source": "wiki",
                "set_index": 0,
                "n": 4,
                "seq_len": 32,
                "task": "ppl:wiki",
                "metric": "perplexity",
                "value": 3.0,
            }
        ]
    )
    assert flat_sections(tmp_path, frame) == ([], [])


def _fake_cell(source: str, index: int):
    from calibench.study.cells import Cell

    return Cell(
        model="m",
        method="wanda",
        method_name="wanda",
        params={},
        source=source,
        source_params={},
        num_sets=3,
        set_index=index,
        n=16,
        seq_len=64,
        seed=0,
        eval={"tasks": ["arc_easy"], "limit": 20},
    )


def test_accuracy_items_pair_by_document_and_holm_runs_over_every_pair(tmp_path):
    """Three sources on arc_easy: per-item acc averaged over sets, shared documents only, Holm over 3 pairs."""
    from calibench.report.frame import load_frame
    from calibench.report.sections import PAIRED_HEADING, SOURCE_CI_HEADING
    from calibench.study.store import Store

    rng = np.random.default_rng(5)
    rates = {"code": 0.3, "math": 0.5, "wiki": 0.8}
    scores = {}
    store = Store(tmp_path)
    for source, rate in rates.items():
        for i in range(3):
            docs = [f"h{j}" for j in range(30) if not (source == "math" and i == 0 and j == 29)]  # one doc missing
            acc = {d: float(rng.uniform() < rate) for d in docs}
            scores[(source, i)] = acc
            items = [{"doc_id": j, "doc_hash": d, "metrics": {"acc": v}} for j, (d, v) in enumerate(acc.items())]
            store.record_success(
                _fake_cell(source, i),
                [{"task": "arc_easy", "metric": "acc", "value": float(np.mean(list(acc.values()))), "n": len(acc)}],
                None,
                {},
                1.0,
                samples={"arc_easy": items},
            )
    store.close()
    frame, _, _ = load_frame(tmp_path)
    sections, plots = flat_sections(tmp_path, frame, tmp_path)
    pairs = dict(sections)[PAIRED_HEADING].set_index(["source A", "source B"])
    assert list(pairs.index) == [("code", "math"), ("code", "wiki"), ("math", "wiki")]
    shared = sorted(f"h{j}" for j in range(29))  # the report orders items by id (resampling depends on order)
    per_set = {s: np.array([[scores[(s, i)][d] for d in shared] for i in range(3)]) for s in rates}
    per_item = {s: matrix.mean(axis=0) for s, matrix in per_set.items()}
    ps = []
    for a, b in pairs.index:
        d = per_item[a] - per_item[b]
        row = pairs.loc[(a, b)]
        assert row["items"] == 29 and row["quantity"] == "acc"
        assert row["difference (A-B)"] == pytest.approx(d.mean())
        assert row["p (these sets)"] == pytest.approx(paired.sign_flip_pvalue(d))
        assert row["p"] == pytest.approx(float(paired.source_difference(per_set[a], per_set[b]).p))
        assert row["items needed"] == paired.items_needed(d.mean(), d.std(ddof=1))
        ps.append(row["p"])
    assert list(pairs["p (Holm)"]) == pytest.approx(list(paired.holm(ps)))
    assert list(pairs["significant"]) == [p < 0.05 for p in paired.holm(ps)]
    assert pairs.loc[("code", "wiki"), "better"] == "wiki" and pairs.loc[("code", "wiki"), "significant"]
    assert math.isnan(pairs.loc[("code", "wiki"), "ppl ratio (A/B)"])
    cis = dict(sections)[SOURCE_CI_HEADING].set_index("source")
    assert cis.loc["wiki", "mean"] == pytest.approx(per_item["wiki"].mean())
    assert [p.name for p in plots] == ["paired_differences.png"]


def test_no_paired_sections_without_per_item_samples(tmp_path):
    from calibench.report.frame import load_frame
    from calibench.study.store import Store

    store = Store(tmp_path)
    for source in ("wiki", "code"):
        for i in range(2):
            store.record_success(
                _fake_cell(source, i), [{"task": "arc_easy", "metric": "acc", "value": 0.5, "n": 20}], None, {}, 1.0
            )
    store.close()
    frame, _, _ = load_frame(tmp_path)
    assert flat_sections(tmp_path, frame, tmp_path) == ([], [])
