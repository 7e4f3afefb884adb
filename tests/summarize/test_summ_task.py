"""The summ: task through ``evaluate``: parsing, rows and per-document items, skipping documents that do not
fit, the same rows for a dense model given as a directory or in memory and for a compressed model in memory or
as a checkpoint, scorers plugged in, and the paired comparison of two runs."""

from __future__ import annotations

import json
import re

import pytest

from conftest import fresh_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory):
    from conftest import corpus_text

    texts = [" ".join(t.split()[:40]) for t in corpus_text(12, seed=3)]  # all fit the tiny model's 256 positions
    path = tmp_path_factory.mktemp("summ") / "docs.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"d{i}", "document": t, "summary": t[:40]}) + "\n" for i, t in enumerate(texts))
    )
    return path


def _task(path, extra=""):
    return f"summ:{path}:nli=none:harim=none:max_new_tokens=6{extra}"


def test_parse_summ_task_options_and_labels(docs_file):
    from calibench.core.errors import CalibenchError
    from calibench.evaluation.tasks import parse_tasks

    (req,) = parse_tasks("summ:xsum")
    assert req.kind == "summarization" and req.name == "summ:xsum" and req.spec.options.max_new_tokens == 64
    (req,) = parse_tasks("summ:xsum:style=paragraph:max_new_tokens=64:system=no")
    assert req.name == "summ:xsum:style=paragraph:system=no"  # defaults left out of the label
    for bad, fragment in [
        ("summ:nosuch", "unknown summarization dataset 'nosuch'"),
        ("summ:xsum:max_new_tokens=0", "max_new_tokens must be at least 1"),
        ("summ:xsum:style=poem", "style must be one of paragraph, sentences, summary"),
        ("summ:xsum:colour=red", "colour is not an option"),
        ("summ:xsum:chat", "is not key=value"),
        ("summ:", "names no dataset"),
    ]:
        with pytest.raises(CalibenchError, match=fragment):
            parse_tasks(bad)


def test_rows_items_and_skips(tiny_model_dir, tiny_tokenizer, docs_file):
    from calibench.evaluation import evaluate

    lengths = sorted(
        len(tiny_tokenizer(json.loads(line)["document"] + "xx")["input_ids"])
        for line in docs_file.read_text().splitlines()
    )
    cap = lengths[len(lengths) // 2] + 20  # about half the documents fit
    task = _task(docs_file, f":max_prompt_tokens={cap}")
    result = evaluate(str(tiny_model_dir), task, log_samples=True, batch_size=4)
    rec = result.tasks[0]
    assert rec.kind == "summarization" and rec.status == "ok"
    assert rec.details["skipped_too_long"] > 0 and rec.n_evaluated + rec.details["skipped_too_long"] == 12
    metrics = {r.metric for r in result.rows}
    assert {
        "rouge1",
        "rouge2",
        "rougeL",
        "src_rouge1",
        "coverage",
        "density",
        "novel_1",
    } <= metrics  # novel_3: NaN (no row) if every summary is under 3 words
    items = result.samples[rec.task]
    assert len(items) == rec.n_evaluated and all(it["new_tokens"] <= 6 for it in items)
    assert {"doc_id", "doc_hash", "response", "target", "metrics"} <= set(items[0])
    assert set(rec.details["ci95"]["rouge1"]) == {"mean", "low", "high", "stderr", "n"}
    # round trip through JSON (NaN written as null) and identical on a rerun
    again = evaluate(str(tiny_model_dir), task, log_samples=True, batch_size=4)
    assert [it["response"] for it in again.samples[rec.task]] == [it["response"] for it in items]
    assert type(result).from_json(result.to_json()).rows == result.rows


def test_limit_and_chat_yes_refused_before_the_model_loads(tiny_model_dir, docs_file):
    from calibench.core.errors import CalibenchError
    from calibench.evaluation import evaluate

    result = evaluate(str(tiny_model_dir), _task(docs_file), limit=3)
    assert result.tasks[0].n_evaluated == 3 and result.rows[0].limit == 3
    with pytest.raises(CalibenchError, match="has no chat template"):
        evaluate(str(tiny_model_dir), _task(docs_file, ":chat=yes"))


def test_same_rows_dense_and_compressed_in_memory_or_checkpoint(
    tmp_path, tiny_model_dir, tiny_tokenizer, docs_file, tiny_text_set
):
    from calibench.compress import compress
    from calibench.evaluation import evaluate

    task = f"summ:{docs_file}:nli=none:validate=no:max_new_tokens=6"  # HaRiM+ judged by the dense model
    by_dir = evaluate(str(tiny_model_dir), task, limit=4)
    in_memory = evaluate(fresh_model(tiny_model_dir), task, tokenizer=tiny_tokenizer, limit=4)
    assert by_dir.rows == in_memory.rows and "harim_plus" in {r.metric for r in by_dir.rows}

    model = fresh_model(tiny_model_dir)
    result = compress(model, tiny_text_set, "magnitude", tokenizer=tiny_tokenizer, sparsity=0.5)
    compressed = evaluate(model, task, tokenizer=tiny_tokenizer, limit=4, log_samples=True)
    result.save(tmp_path / "ckpt", tiny_tokenizer)
    checkpoint = evaluate(str(tmp_path / "ckpt"), task, limit=4, log_samples=True)
    assert compressed.rows == checkpoint.rows
    assert compressed.tasks[0].details["harim"]["judge"] == checkpoint.tasks[0].details["harim"]["judge"]
    assert compressed.rows != by_dir.rows


def test_pluggable_nli_and_judge_validation_read_from_the_cache(monkeypatch, capsys, tiny_model_dir, docs_file):
    """An evaluation never validates a judge: before `summ validate` its results are marked not validated with
    one warning line naming the command; after it, the cached accuracy is a row."""
    from calibench.evaluation import evaluate
    from calibench.summarize import judges
    from calibench.summarize import nli as nli_module
    from calibench.summarize import task as task_module
    from calibench.summarize.data import FactualPair
    from calibench.summarize.nli import FunctionNli

    calls = []

    def support(p, h):
        calls.append(len(p))
        return [1.0 if set(b.split()) <= set(a.split()) else 0.25 for a, b in zip(p, h)]

    stub = FunctionNli(support, "stub")
    monkeypatch.setattr(nli_module, "get_nli", lambda name: stub)
    monkeypatch.setattr(nli_module, "check_nli_name", lambda name, offline=False: None)
    monkeypatch.setattr(nli_module, "check_nli_spelling", lambda name, offline=False: None)
    monkeypatch.setattr(
        judges, "factual_pairs", lambda limit=None: [FactualPair(f"a b c{i}", "a b", "a x") for i in range(3)]
    )
    monkeypatch.setattr(task_module, "_WARNED", set())
    task = f"summ:{docs_file}:nli=org/stub:harim=none:max_new_tokens=6"

    before = evaluate(str(tiny_model_dir), task, limit=3)
    err = capsys.readouterr().err
    consistency = before.tasks[0].details["consistency"]
    assert consistency["validated"] is False and consistency["factual_summary_pairs"] is None
    assert "summac_zs.fsp_acc" not in {r.metric for r in before.rows}
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and re.fullmatch(
        r"warning: judge nli \(org/stub\) is not validated on this machine; "
        r"run 'calibench summ validate --judge nli --judge-model org/stub' \(~\d+ min\)",
        warnings[0],
    ), err
    scored = sum(calls)  # the evaluation scored its 3 summaries and nothing else

    result = judges.validate_judge("nli", "org/stub")
    assert result["accuracy"] == 1.0 and result["pairs"] == 3 and not result["cached"]
    assert sum(calls) == scored + 6  # both rewrites of the 3 pairs
    assert judges.validate_judge("nli", "org/stub")["cached"] and sum(calls) == scored + 6

    after = evaluate(str(tiny_model_dir), task, limit=3)
    values = {r.metric: r.value for r in after.rows}
    assert 0.25 <= values["summac_zs"] <= 1.0 and values["summac_zs.fsp_acc"] == 1.0
    assert after.tasks[0].details["consistency"]["validated"] is True
    assert after.tasks[0].details["consistency"]["factual_summary_pairs"]["pairs"] == 3
    assert "warning" not in capsys.readouterr().err
    off = evaluate(str(tiny_model_dir), task + ":validate=no", limit=3)
    assert off.tasks[0].details["consistency"]["validated"] is None
    assert "summac_zs.fsp_acc" not in {r.metric for r in off.rows}
    assert task_module.CONSISTENCY_METRIC == "summac_zs"


def test_paired_comparison_of_two_runs(tmp_path, tiny_model_dir, tiny_tokenizer, docs_file, tiny_text_set):
    from calibench.compress import compress
    from calibench.evaluation import evaluate
    from calibench.report.summarization_plots import overlap_consistency_plot
    from calibench.summarize.compare import compare_table, load_run, paired_rows

    task = _task(docs_file)
    dense = evaluate(str(tiny_model_dir), task, limit=5, log_samples=True)
    model = fresh_model(tiny_model_dir)
    compress(model, tiny_text_set, "magnitude", tokenizer=tiny_tokenizer, sparsity=0.5)
    pruned = evaluate(model, task, tokenizer=tiny_tokenizer, limit=5, log_samples=True)
    for name, res in (("dense", dense), ("pruned", pruned)):
        (tmp_path / f"{name}.json").write_text(res.to_json())
    runs = [load_run(tmp_path / "dense.json"), load_run(tmp_path / "pruned.json")]
    rows = {r["metric"]: r for r in paired_rows(runs[0].items, runs[1].items)}
    assert rows["rouge1"]["n"] == 5 and rows["rouge1"]["low"] <= rows["rouge1"]["diff"] <= rows["rouge1"]["high"]
    assert rows["rouge1"]["diff"] == pytest.approx(rows["rouge1"]["other"] - rows["rouge1"]["base"])
    same = {r["metric"]: r for r in paired_rows(runs[0].items, runs[0].items)}
    assert same["coverage"]["diff"] == 0 and not same["coverage"]["significant"]
    table = compare_table(runs)
    assert "pruned - dense [95% CI]" in table and "Paired over 5 documents" in table
    # a plot needs a consistency metric: give one by hand
    for it in runs[0].items.values():
        it["metrics"]["summac_zs"] = 0.5
    assert overlap_consistency_plot([("dense", list(runs[0].items.values()))], tmp_path / "p.png").is_file()
