"""Self-calibration generation: schedule, first-token restriction, exact restarts, determinism, manifest, errors."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch

from calibench.core.errors import CalibenchError
from calibench.selfcal import (
    SamplingPlan,
    generate_calibration_set,
    load_stopwords,
    process_logits,
    resolve_start_token,
    run_generation,
    sample_streams,
    stopword_token_ids,
    temperature_at,
)
from calibench.selfcal.schedule import check_schedule
from calibench.selfcal.stopwords import first_word_is_stopword, parse_stopwords
from conftest import make_tokenizer, tiny_llama_config

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from calibench.models import load_model

    return load_model(tiny_model_dir)


def reference_temperature(i: int, t_init: float, t_final: float, n: int) -> float:
    """The paper's formula, written out independently of calibench.selfcal.schedule."""
    return t_init + (i / n) * (t_final - t_init) if i < n else t_final


def plan_for(tokenizer, **kw) -> SamplingPlan:
    start = resolve_start_token(tokenizer)
    values = dict(
        start_id=start.id,
        stop_ids=(start.id, tokenizer.eos_token_id),
        t_init=1.0,
        t_final=1.0,
        schedule_tokens=0,
        max_new_tokens=1000,
        vocab_size=len(tokenizer),
    )
    values.update(kw)
    return SamplingPlan(**values)


# --------------------------------------------------------------------------- schedule (pure math)


def test_temperature_formula_values():
    # t_i = t_init + (i/n)(t_final - t_init) for i < n, t_final after
    assert temperature_at(0, 2.0, 0.5, 4) == 2.0
    assert temperature_at(1, 2.0, 0.5, 4) == pytest.approx(1.625)
    assert temperature_at(2, 2.0, 0.5, 4) == pytest.approx(1.25)
    assert temperature_at(3, 2.0, 0.5, 4) == pytest.approx(0.875)
    assert temperature_at(4, 2.0, 0.5, 4) == 0.5
    assert temperature_at(1000, 2.0, 0.5, 4) == 0.5
    assert temperature_at(0, 0.0, 1.0, 10) == 0.0  # greedy first token
    assert temperature_at(5, 0.0, 1.0, 10) == pytest.approx(0.5)
    assert all(temperature_at(i, 3.0, 0.7, 0) == 0.7 for i in range(5))  # n = 0: constant t_final


@pytest.mark.parametrize("t_init,t_final,n", [(-0.1, 1.0, 4), (1.0, -2.0, 4), (float("nan"), 1.0, 4), (1.0, 1.0, -1)])
def test_schedule_rejects_bad_values(t_init, t_final, n):
    with pytest.raises(CalibenchError):
        check_schedule(t_init, t_final, n)


# --------------------------------------------------------------------------- process_logits (pure)


def test_process_logits_masks_and_temperatures():
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.5, -1.0, 9.0]] * 3)
    plan = SamplingPlan(
        start_id=0,
        stop_ids=(1,),
        t_init=2.0,
        t_final=0.0,
        schedule_tokens=2,
        max_new_tokens=10,
        vocab_size=5,
        first_token_ids=(3, 4),
    )
    masks = {
        "first": torch.tensor([0, 0, 0, 1, 1, 0], dtype=torch.bool),
        "stop": torch.tensor([0, 1, 0, 0, 0, 0], dtype=torch.bool),
        "beyond_vocab": torch.tensor([0, 0, 0, 0, 0, 1], dtype=torch.bool),
    }
    probs, temps = process_logits(logits, [0, 1, 7], plan, masks)
    assert temps == [2.0, 1.0, 0.0]
    # row 0: first token, only ids 3 and 4, at t = 2
    expected0 = torch.softmax(torch.tensor([0.5, -1.0]) / 2.0, dim=0)
    assert torch.allclose(probs[0, [3, 4]], expected0) and probs[0, [0, 1, 2, 5]].sum() == 0
    # row 1: index 1 >= min_new_tokens: stop token allowed; id 5 (beyond the tokenizer) never
    expected1 = torch.softmax(torch.tensor([1.0, 2.0, 3.0, 0.5, -1.0]) / 1.0, dim=0)
    assert torch.allclose(probs[1, :5], expected1) and probs[1, 5] == 0
    # row 2: t = 0 -> greedy one-hot on the best allowed token (id 2, not the out-of-vocabulary 5)
    assert probs[2].tolist() == [0, 0, 1, 0, 0, 0]


def test_draw_is_exact_inverse_cdf_sampling():
    from calibench.selfcal.sampler import draw

    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3, 0.0]] * 100_000)
    tokens = draw(probs, torch.Generator().manual_seed(1))
    freq = torch.bincount(tokens, minlength=5).double() / len(tokens)
    assert freq[1] == 0 and freq[4] == 0  # zero-probability tokens are never drawn
    assert torch.allclose(freq, probs[0].double(), atol=0.005)
    onehot = torch.zeros(50, 7)
    onehot[torch.arange(50), torch.arange(50) % 7] = 1.0
    assert draw(onehot, torch.Generator().manual_seed(2)).tolist() == (torch.arange(50) % 7).tolist()
    a = draw(probs[:10], torch.Generator().manual_seed(3))
    assert a.tolist() == draw(probs[:10], torch.Generator().manual_seed(3)).tolist()  # the seed decides


# --------------------------------------------------------------------------- a scripted fake model


class ScriptedLM(torch.nn.Module):
    """Logits depend only on the position id; records what the sampler feeds it."""

    def __init__(self, tokenizer, script):
        super().__init__()
        self.config = tiny_llama_config(tokenizer)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.vocab = len(tokenizer)
        self.script = script  # position -> token id made near-certain
        self.calls = []

    def get_output_embeddings(self):
        return None

    def forward(self, input_ids, attention_mask, position_ids, past_key_values, use_cache, logits_to_keep):
        self.calls.append(
            {
                "input": input_ids.view(-1).tolist(),
                "mask": attention_mask.clone(),
                "pos": position_ids.view(-1).tolist(),
            }
        )
        rows = input_ids.shape[0]
        gen = torch.Generator().manual_seed(len(self.calls))
        logits = torch.randn(rows, self.vocab, generator=gen)
        for r, p in enumerate(position_ids.view(-1).tolist()):
            if p in self.script:
                logits[r, self.script[p]] += 100.0
        return SimpleNamespace(logits=logits[:, None, :])


def test_restart_after_stop_token_keeps_separator_and_resets_positions(tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    model = ScriptedLM(tiny_tokenizer, {3: eos})  # the 4th generated token is EOS
    plan = plan_for(tiny_tokenizer)
    start = plan.start_id
    tokens, stats = sample_streams(model, n=2, seq_len=14, plan=plan, seed=0, batch_size=2)
    for row in tokens.tolist():
        # <s> a b c </s> <s> a b c </s> <s> a b c   (generations of 3 tokens, EOS kept, start token after it)
        assert row[0] == start and row[4] == eos and row[5] == start and row[9] == eos and row[10] == start
        assert eos not in row[1:4] + row[6:9] + row[11:]
    assert stats.ended_by_stop_token == 4 and stats.stop_tokens == {eos: 4} and stats.cut_by_seq_len == 2
    positions = [call["pos"][0] for call in model.calls]
    assert positions == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3][: len(positions)]
    # after the restart at step 4 the row's mask hides every earlier column
    mask_at_restart = model.calls[4]["mask"][0].tolist()
    assert mask_at_restart == [0, 0, 0, 0, 1]
    assert model.calls[4]["input"] == [start, start]


def test_stop_token_never_first(tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    model = ScriptedLM(tiny_tokenizer, {0: eos})  # the model wants to stop at once
    tokens, stats = sample_streams(model, n=3, seq_len=8, plan=plan_for(tiny_tokenizer), seed=1, batch_size=3)
    assert (tokens[:, 1] != eos).all()


def test_generation_cut_by_max_new_tokens(tiny_tokenizer):
    model = ScriptedLM(tiny_tokenizer, {})
    plan = plan_for(tiny_tokenizer, max_new_tokens=3, stop_ids=(1,))
    tokens, stats = sample_streams(model, n=1, seq_len=9, plan=plan, seed=0, batch_size=1)
    row = tokens[0].tolist()
    assert row[0] == row[4] == row[8] == plan.start_id  # start, 3 tokens, start (no stop token inserted), ...
    assert stats.cut_by_max_new_tokens == 2


# --------------------------------------------------------------------------- the real (tiny) model


def test_temperature_applied_at_every_step_equals_the_formula(tiny_model, tiny_tokenizer):
    t_init, t_final, n_sched, max_new = 2.0, 0.5, 6, 9
    plan = plan_for(tiny_tokenizer, t_init=t_init, t_final=t_final, schedule_tokens=n_sched, max_new_tokens=max_new)
    records = []
    tokens, _ = sample_streams(tiny_model, n=3, seq_len=40, plan=plan, seed=3, batch_size=3, trace=records.append)
    stops = set(plan.stop_ids)
    index = [0, 0, 0]  # the test's own count of generated tokens within each row's generation
    checked = set()
    for rec in records:
        for r in range(3):
            if rec["done"][r]:
                continue
            assert rec["gen_index"][r] == index[r]
            t = reference_temperature(index[r], t_init, t_final, n_sched)
            assert rec["temperature"][r] == pytest.approx(t, abs=1e-12)
            logits = rec["logits"][r].clone()
            if index[r] == 0:
                logits[list(stops)] = -math.inf
            expected = torch.softmax(logits / t, dim=-1)
            assert torch.allclose(rec["probs"][r], expected, atol=1e-6), (rec["step"], r)
            checked.add(index[r])
            token = rec["tokens"][r]
            index[r] = 0 if token in stops or index[r] + 1 >= max_new else index[r] + 1
    assert checked == set(range(max_new))  # both the ramp (i < n) and the flat part (i >= n) were exercised


def test_first_token_stopwords_every_generation(tiny_model, tiny_tokenizer):
    words, _ = load_stopwords()
    allowed = set(stopword_token_ids(tiny_tokenizer, words))
    assert allowed, "the tiny vocabulary has stop words such as 'the' and 'of'"
    calib, stats = run_generation(
        tiny_model, tiny_tokenizer, n=5, seq_len=48, seed=0, first_token="stopwords", max_new_tokens=7, batch_size=4
    )
    start = calib.manifest.generator["start_token"]["id"]
    firsts = 0
    for row in calib.input_ids.tolist():
        assert row[1] in allowed  # every sample begins (after the start token) with a stop word
        assert tiny_tokenizer.decode([row[1]]).strip().lower() in words
        for i in range(len(row) - 1):  # and so does every generation inside it
            if row[i] == start:
                assert row[i + 1] in allowed
                firsts += 1
    assert firsts > 5 and stats.generations >= firsts
    assert calib.manifest.generator["first_token"]["matching_tokens"] == len(allowed)


def test_restarts_are_independent_generations_like_hf_generate(tiny_model, tiny_tokenizer):
    """Greedy (t = 0) with a 5-token cap: every generation must equal model.generate from the start token."""
    plan = plan_for(tiny_tokenizer, t_init=0.0, t_final=0.0, max_new_tokens=5)
    start = torch.tensor([[plan.start_id]])
    ref = tiny_model.generate(
        start,
        attention_mask=torch.ones_like(start),
        do_sample=False,
        max_new_tokens=5,
        min_new_tokens=5,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )[0, 1:].tolist()
    assert not set(ref[1:]) & set(plan.stop_ids)  # the assumption that makes the comparison exact
    expected = ([plan.start_id] + ref) * 10
    for batch_size in (1, 3):
        tokens, _ = sample_streams(tiny_model, n=3, seq_len=40, plan=plan, seed=0, batch_size=batch_size)
        for row in tokens.tolist():
            assert row == expected[:40], batch_size


def test_same_seed_gives_byte_identical_sets(tiny_model, tiny_tokenizer, tmp_path):
    kwargs = dict(n=5, seq_len=24, first_token="stopwords", batch_size=2, max_new_tokens=9)
    a = generate_calibration_set(tiny_model, tiny_tokenizer, seed=7, **kwargs).save(tmp_path / "a")
    b = generate_calibration_set(tiny_model, tiny_tokenizer, seed=7, **kwargs).save(tmp_path / "b")
    c = generate_calibration_set(tiny_model, tiny_tokenizer, seed=8, **kwargs).save(tmp_path / "c")
    for name in ("manifest.json", "input_ids.npy", "attention_mask.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "input_ids.npy").read_bytes() != (c / "input_ids.npy").read_bytes()


def test_manifest_records_every_generator_parameter(tiny_model, tiny_tokenizer, tmp_path):
    from calibench.data.calibset import CalibrationSet

    calib = generate_calibration_set(
        tiny_model,
        tiny_tokenizer,
        n=2,
        seq_len=16,
        seed=3,
        t_init=1.2,
        t_final=0.8,
        schedule_tokens=5,
        max_new_tokens=11,
        batch_size=2,
    )
    loaded = CalibrationSet.load(calib.save(tmp_path / "s"), tokenizer=tiny_tokenizer)
    m = loaded.manifest
    assert (m.source.name, m.source.kind, m.sampling.mode, m.seed) == ("self", "generated", "generated", 3)
    g = m.generator
    assert (g["t_init"], g["t_final"], g["schedule_tokens"], g["max_new_tokens"], g["batch_size"]) == (
        1.2,
        0.8,
        5,
        11,
        2,
    )
    assert g["first_token"] == {"mode": "any"} and g["backend"] == "torch" and g["seed"] == 3
    assert g["start_token"]["id"] == tiny_tokenizer.bos_token_id and "rule" in g["start_token"]
    assert tiny_tokenizer.eos_token_id in g["stop_token_ids"] and "separator" in g
    assert set(g["libraries"]) == {"torch", "transformers"} and g["model"]["dtype"] == "float32"
    assert g["result"]["generations"] >= 2
    assert (loaded.input_ids[:, 0] == tiny_tokenizer.bos_token_id).all()


# --------------------------------------------------------------------------- start token rules


def test_start_token_rules(tiny_tokenizer):
    assert resolve_start_token(tiny_tokenizer).rule.startswith("auto: the tokenizer's bos_token")
    assert resolve_start_token(tiny_tokenizer, "3").id == 3
    assert resolve_start_token(tiny_tokenizer, "</s>").id == tiny_tokenizer.eos_token_id
    with pytest.raises(CalibenchError):
        resolve_start_token(tiny_tokenizer, "no-such-token")
    endoftext = make_tokenizer(extra_specials=("<|endoftext|>",))
    endoftext.bos_token = None
    start = resolve_start_token(endoftext)
    assert start.text == "<|endoftext|>" and "document separator" in start.rule


def test_no_bos_and_no_fallback_is_a_user_error():
    tok = make_tokenizer()
    tok.bos_token = None
    tok.eos_token = None
    with pytest.raises(CalibenchError, match="no BOS token"):
        resolve_start_token(tok)


def test_stopword_file_parsing(tmp_path):
    assert parse_stopwords("# c\nThe\n\nof  # x\nthe\n") == ["the", "of"]
    words, origin = load_stopwords()
    assert {"the", "of", "and", "a", "in"} <= set(words) and origin.endswith("stopwords_en.txt")
    assert first_word_is_stopword("  The cat", words) and not first_word_is_stopword("Theory", words)
    with pytest.raises(CalibenchError):
        load_stopwords(tmp_path / "missing.txt")


def test_vllm_backend_missing_is_a_user_error(tiny_model_dir, monkeypatch):
    import calibench.selfcal.vllm_backend as vb

    monkeypatch.setattr(vb, "vllm_available", lambda: False)
    with pytest.raises(CalibenchError, match="vllm"):
        generate_calibration_set(str(tiny_model_dir), n=1, seq_len=8, backend="vllm")


def test_vllm_request_processor_applies_the_schedule():
    from calibench.selfcal.vllm_backend import make_request_processor, request_seed

    proc = make_request_processor(
        {"t_init": 2.0, "t_final": 1.0, "schedule_tokens": 4, "first_token_ids": [1, 3], "vocab_size": 5}
    )
    logits = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    first = proc([], logits.clone())
    assert torch.isinf(first[[0, 2, 4, 5]]).all() and torch.allclose(first[[1, 3]], torch.tensor([1.0, 2.0]))
    assert torch.allclose(proc([7, 7], logits.clone())[:5], logits[:5] / 1.5)
    assert torch.allclose(proc([7] * 9, logits.clone())[:5], logits[:5])
    assert request_seed(0, 1, 2) == request_seed(0, 1, 2) != request_seed(0, 2, 1)


def test_vllm_backend_concatenates_generations(tiny_tokenizer, monkeypatch):
    """A stand-in LLM checks how vLLM outputs become samples (no vLLM here)."""
    import sys

    import calibench.selfcal.vllm_backend as vb

    class Params:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class FakeLLM:
        def generate(self, prompts, params, use_tqdm=False):
            outs = []
            for p in params:
                ids = [7, 8, 9][: p.max_tokens]
                finish, reason = ("stop", None) if p.max_tokens > 3 else ("length", None)
                if finish == "stop":
                    ids = ids + [tiny_tokenizer.eos_token_id]
                outs.append(
                    SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, finish_reason=finish, stop_reason=reason)])
                )
            return outs

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=None, SamplingParams=Params))
    monkeypatch.setattr(vb, "vllm_available", lambda: True)
    plan = plan_for(tiny_tokenizer)
    tokens, stats = vb.sample_streams_vllm("x", tiny_tokenizer, 2, 12, plan, seed=0, llm=FakeLLM())
    s, e = plan.start_id, tiny_tokenizer.eos_token_id
    assert tokens.tolist() == [[s, 7, 8, 9, e, s, 7, 8, 9, e, s, 7]] * 2
    assert stats.ended_by_stop_token == 4 and stats.cut_by_seq_len == 2


# --------------------------------------------------------------------------- CLI


def run_cli(argv, capsys):
    from calibench.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, fragment):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and fragment in lines[-1], err
    assert "Traceback" not in err and sum(line.startswith("error: ") for line in lines) == 1


def test_cli_generate_then_stats(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "self"
    code, stdout, err = run_cli(
        [
            "data",
            "generate",
            "-m",
            str(tiny_model_dir),
            "--n",
            "3",
            "--seq-len",
            "20",
            "--out",
            str(out),
            "--first-token",
            "stopwords",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "6",
            "--jsonl",
        ],
        capsys,
    )
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["first_token"]["mode"] == "stopwords" and manifest["tokens_sha256"] in stdout
    assert "tokens/s" in stdout and len((out / "windows.jsonl").read_text().splitlines()) == 3
    code, stdout, err = run_cli(
        ["data", "stats", str(out), "--model", str(tiny_model_dir), "--out", str(tmp_path / "stats.json")], capsys
    )
    assert code == 0, err
    data = json.loads((tmp_path / "stats.json").read_text())
    assert data["sets"][0]["source"] == "self" and data["sets"][0]["perplexity"] > 1
    assert "perplexity" in stdout and "self" in stdout


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--t-init", "-0.5"], "--t-init"),
        (["--t-final", "-1"], "--t-final"),
        (["--n", "0"], "--n"),
        (["--n", "9000"], "--n"),
        (["--seq-len", "1"], "--seq-len"),
        (["--seq-len", "4096"], "maximum"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_cli_generate_errors(tiny_model_dir, tmp_path, capsys, args, fragment):
    out = tmp_path / "x"
    code, _, err = run_cli(
        ["data", "generate", "-m", str(tiny_model_dir), "--out", str(out), "--n", "2", "--seq-len", "16", *args], capsys
    )
    assert_one_line_error(code, err, fragment)
    assert not out.exists()


def test_cli_generate_model_without_bos(tiny_model_dir, tmp_path, capsys):
    model_dir = tmp_path / "nobos"
    shutil.copytree(tiny_model_dir, model_dir)
    tok = make_tokenizer()
    tok.bos_token = None
    tok.eos_token = None
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (model_dir / name).unlink(missing_ok=True)
    tok.save_pretrained(model_dir)
    code, _, err = run_cli(
        ["data", "generate", "-m", str(model_dir), "--out", str(tmp_path / "o"), "--n", "2", "--seq-len", "16"], capsys
    )
    assert_one_line_error(code, err, "no BOS token")
    assert not (tmp_path / "o").exists()
