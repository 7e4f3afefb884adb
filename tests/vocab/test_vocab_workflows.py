"""Vocabulary pruning in the workflows around it: lm-eval tasks, compression before/after, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import assert_one_line_error, copa_rows, fresh_model, run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fake_copa_mirror(monkeypatch):
    """copa offline from synthetic rows instead of the data pack (as in test_eval_api)."""
    from calibench.evaluation import lmeval
    from calibench.evaluation.mirrors import Mirror

    monkeypatch.setattr(
        lmeval,
        "build_mirror",
        lambda task, root=None: Mirror("copa", {"validation": copa_rows()}, {"validation": "synthetic"}),
    )


def _specials(tok):
    return [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id]


def test_task_tokens_cover_every_lm_eval_request_and_exact_input_scores_are_identical(
    tiny_model_dir, tiny_tokenizer, fake_copa_mirror, heldout_file
):  # fmt: skip
    """Counted as lm-eval renders the requests: a model pruned to *only* those ids (no byte or template
    tokens) runs copa without one uncovered token, with identical per-item loglikelihoods in exact-input mode."""
    from calibench.evaluation import evaluate
    from calibench.vocab import Inputs, collect, from_ids, prune

    tasks = f"copa,ppl:{heldout_file}"
    counted = collect(tiny_tokenizer, Inputs(tasks=[tasks]), model=str(tiny_model_dir))
    notes = {n["task"]: n for n in counted.inputs[0]["tasks"]}
    assert notes["copa"]["requests"] == 2 * 6 and notes["copa"]["kind"] == "lm-eval"  # 6 items x 2 choices
    only = from_ids(tiny_tokenizer, [*counted.counted_ids, *_specials(tiny_tokenizer)], with_always=False)
    assert len(only.kept) < len(tiny_tokenizer)
    full = evaluate(fresh_model(tiny_model_dir), tasks, tokenizer=tiny_tokenizer, seq_len=32, log_samples=True)
    runs = {}
    for mode in ("exact-input", "restricted"):
        model = fresh_model(tiny_model_dir)
        prune(model, only, mode, tokenizer=tiny_tokenizer)
        runs[mode] = evaluate(model, tasks, tokenizer=tiny_tokenizer, seq_len=32, log_samples=True)
    exact = runs["exact-input"]
    assert [r.model_dump() for r in exact.rows] == [r.model_dump() for r in full.rows]
    assert exact.samples["copa"] == full.samples["copa"]
    # restricted: every loglikelihood is normalised over fewer tokens, so it can only go up
    for a, b in zip(full.samples["copa"], runs["restricted"].samples["copa"]):
        assert all(y >= x - 1e-6 for x, y in zip(a["loglikelihoods"], b["loglikelihoods"]))
    ppl_full, ppl_restricted = (r.rows[-1].value for r in (full, runs["restricted"]))
    assert ppl_restricted <= ppl_full


@pytest.mark.parametrize("order", ["prune-then-wanda", "wanda-then-prune"])
def test_vocabulary_pruning_composes_with_compression(tiny_model_dir, tiny_tokenizer, tiny_text_set, tmp_path, order):
    """Kept-token logits of the compressed model are unchanged by pruning, before or after Wanda; the result saves
    and reloads."""
    from calibench.compress import compress
    from calibench.models import load_model
    from calibench.vocab import from_ids, prune, save

    ids = tiny_text_set.input_ids[tiny_text_set.attention_mask.astype(bool)]
    vocab = from_ids(tiny_tokenizer, [*ids.tolist(), *_specials(tiny_tokenizer)], with_always=False)
    reference = fresh_model(tiny_model_dir)
    compress(reference, tiny_text_set, "wanda", tokenizer=tiny_tokenizer, sparsity=0.5)
    model = fresh_model(tiny_model_dir)
    if order == "prune-then-wanda":  # the calibration passes run through the id map
        prune(model, vocab, "restricted", tokenizer=tiny_tokenizer)
        compress(model, tiny_text_set, "wanda", tokenizer=tiny_tokenizer, sparsity=0.5)
    else:
        compress(model, tiny_text_set, "wanda", tokenizer=tiny_tokenizer, sparsity=0.5)
        prune(model, vocab, "restricted", tokenizer=tiny_tokenizer)
    window = torch.as_tensor(tiny_text_set.input_ids[:2, :16], dtype=torch.long)
    kept = torch.tensor(vocab.kept)
    with torch.no_grad():
        want, got = reference(window).logits[..., kept], model(window).logits
    assert torch.equal(got[..., kept], want)
    save(model, tmp_path / "ckpt", tiny_tokenizer)
    again = load_model(tmp_path / "ckpt", dtype="float32", device="cpu")
    with torch.no_grad():
        assert torch.equal(again(window).logits, got)


def test_cli_collect_prune_restore_round_trip(tiny_model_dir, tiny_tokenizer, text_file, tmp_path, capsys):
    vocab_file = tmp_path / "v.json"
    code, out, err = run(["vocab", "collect", "-m", str(tiny_model_dir), "--text", str(text_file), "--heldout",
                          str(text_file), "-o", str(vocab_file)], capsys)  # fmt: skip
    assert code == 0, err
    assert "kept" in out and "coverage of" in out and "100.00%" in out
    pruned = str(tmp_path / "p")
    code, out, err = run(["vocab", "prune", "-m", str(tiny_model_dir), "--keep", str(vocab_file),
                          "-o", pruned, "--mode", "restricted", "--fallback", "<unk>"], capsys)  # fmt: skip
    assert code == 0, err
    assert "restricted: kept" in out and "saved" in out
    record = json.loads((tmp_path / "p" / "vocab.json").read_text())
    assert record["mode"] == "restricted" and record["fallback"] == tiny_tokenizer.unk_token_id
    assert record["memory"]["before"]["vocab_bytes"] > record["memory"]["after"]["vocab_bytes"]
    code, out, err = run(["vocab", "restore", str(tmp_path / "p"), "-o", str(tmp_path / "r")], capsys)
    assert code == 0, err
    a, b = fresh_model(tiny_model_dir).state_dict(), fresh_model(tmp_path / "r").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # restoring what was never pruned, pruning twice
    code, _, err = run(["vocab", "restore", str(tmp_path / "r"), "-o", str(tmp_path / "r2")], capsys)
    assert_one_line_error(code, err, "was never vocabulary-pruned")
    code, _, err = run(
        ["vocab", "prune", "-m", str(tmp_path / "p"), "--keep", str(vocab_file), "-o", str(tmp_path / "p2")], capsys
    )
    assert_one_line_error(code, err, "is vocabulary-pruned already")
    assert not (tmp_path / "r2").exists() and not (tmp_path / "p2").exists()


def test_cli_model_without_input_embedding_is_one_line(
    tiny_model_dir, tiny_tokenizer, text_file, tmp_path, capsys, monkeypatch
):
    import calibench.models
    from calibench.vocab import Inputs, collect

    vocab_file = collect(tiny_tokenizer, Inputs(text=[str(text_file)])).save(tmp_path / "v.json")
    model = fresh_model(tiny_model_dir)
    monkeypatch.setattr(type(model), "get_input_embeddings", lambda self: None)
    monkeypatch.setattr(calibench.models, "load_model", lambda *a, **k: model)
    code, _, err = run(
        ["vocab", "prune", "-m", str(tiny_model_dir), "--keep", str(vocab_file), "-o", str(tmp_path / "p")], capsys
    )
    assert_one_line_error(code, err, "has no input embedding to prune")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("mode", ["exact-input", "restricted"])
def test_study_option_prunes_each_cell_to_its_evaluation_vocabulary(tmp_path, tiny_model_dir, fake_copa_mirror, mode):
    """`eval: {vocab: {mode: ...}}`: each cell evaluates again pruned; exact-input is identical, restricted records
    the change."""
    from calibench.study import load_spec, run_study
    from calibench.study.cells import expand
    from calibench.study.store import Store
    from conftest import corpus_text

    train, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(30, seed=7)))
    base = f"""models: [{tiny_model_dir}]
methods: [{{name: magnitude, params: {{sparsity: 0.5}}}}]
sources: [{{name: {train}}}]
n: [2]
seq_len: [16]
eval:
  tasks: [copa, ppl:{heldout}]
  ppl_seq_len: 32
  ppl_max_windows: 2
"""
    plain = tmp_path / "plain.yaml"
    plain.write_text(base)
    spec = tmp_path / "s.yaml"
    spec.write_text(base + f"  vocab: {{mode: {mode}}}\n")
    assert [c.key for c in expand(load_spec(plain))] != [c.key for c in expand(load_spec(spec))]
    summary = run_study(spec, tmp_path / "out", progress=False)
    assert summary.done == 2 and summary.failed == 0
    store = Store(tmp_path / "out")
    records = {r["key"]: r["record"] for r in store.rows()}
    store.close()
    for record in records.values():
        vocab = record["vocab"]
        assert vocab["mode"] == mode and 0 < vocab["kept"] < vocab["vocab_size"]
        assert vocab["memory"]["before"]["model_bytes"] > 0
        if mode == "exact-input":
            assert vocab["identical"] and all(r["diff"] == 0 for r in vocab["rows"])
        else:
            (ppl,) = [r for r in vocab["rows"] if r["metric"] == "perplexity"]
            assert ppl["pruned"] <= ppl["full"]  # normalised over fewer tokens
            assert vocab["memory"]["after"]["vocab_bytes"] < vocab["memory"]["before"]["vocab_bytes"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "  vocab: {mode: sideways}\n")
    from calibench.core.errors import CalibenchError

    with pytest.raises(CalibenchError, match="unknown vocab mode 'sideways'"):
        load_spec(bad)
