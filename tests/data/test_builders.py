"""The set-builder registry: one path for API, CLI and specs; mixtures; any hub dataset; chat data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calibench.core.errors import CalibenchError, ParameterError
from calibench.data.builders import build_set, build_sets, builders, make_params
from calibench.data.builders.mixture import exact_counts
from calibench.data.calibset import CalibrationSet
from conftest import corpus_text, run

pytestmark = pytest.mark.filterwarnings("ignore")

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


@pytest.fixture
def chat_tokenizer(tiny_tokenizer):
    """A copy with a chat template: the session's tiny tokenizer is shared, and other tests expect it without one."""
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture
def conversations(tmp_path) -> Path:
    path = tmp_path / "convs.jsonl"
    texts = corpus_text(40, seed=3)
    rows = [
        {"messages": [{"role": "user", "content": texts[i]}, {"role": "assistant", "content": texts[i + 1]}]}
        for i in range(0, 40, 2)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def hub_mirror(tmp_path, monkeypatch) -> Path:
    """A hub mirror with ORG/NAME (default revision) and ORG/NAME@v2, each one JSON-lines train file."""
    root = tmp_path / "mirror"
    for folder, seed in (("acme/corpus", 0), ("acme/corpus@v2", 1)):
        data = root / folder / "data"
        data.mkdir(parents=True)
        lines = [json.dumps({"body": t}) for t in corpus_text(80, seed=seed)]
        (data / "train.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("CALIBENCH_HUB_MIRROR", str(root))
    return root


# ----------------------------------------------------------------- the registry


def test_every_builder_is_listed_with_its_parameters(capsys):
    code, out, _ = run(["data", "sources"], capsys)
    assert code == 0
    for name, builder in builders().items():
        if name != "text":
            assert (builder.usage or name)[:12] in out, name
    for source in ("wiki", "science", "math", "code", "c4"):
        assert source in out
    assert "--t-init" in out and "--components" in out and "--revision" in out


def test_parameters_are_validated_by_name(text_file):
    with pytest.raises(ParameterError, match="^t_init is not a parameter of 'wiki'"):
        make_params("wiki", t_init=0.3)
    with pytest.raises(ParameterError, match="^n must be between 1 and 8192"):
        make_params("wiki", n=9000)
    with pytest.raises(ParameterError, match="^path is already given by the name"):
        make_params(str(text_file), path="other.txt")
    builder, params = make_params("self", n=4, t_init=0.2)
    assert builder.name == "self" and params.t_init == 0.2 and params.prompting == "bos"


@pytest.mark.parametrize("prompting", ["bos", "chat"])
def test_self_refuses_a_misspelt_setting_with_a_hint(prompting, chat_tokenizer, tiny_model_dir, monkeypatch):
    import calibench.models

    monkeypatch.setattr(calibench.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    message = "^t_innit is not a parameter of 'self' \\(did you mean 't_init'\\?\\) \\(its parameters: "
    with pytest.raises(ParameterError, match=message):
        make_params("self", prompting=prompting, t_innit=3)
    with pytest.raises(ParameterError, match=message) as info:
        build_set(
            "self", model=str(tiny_model_dir), tokenizer=chat_tokenizer, n=2, seq_len=32, prompting=prompting, t_innit=3
        )
    assert info.value.param == "t_innit"


def test_parameter_error_hint_is_rendered_as_flags():
    error = ParameterError("t_innit", "is not a parameter of 'self'", allowed=["seq_len", "t_init"])
    assert error.render(lambda p: "--" + p.replace("_", "-")) == (
        "--t-innit is not a parameter of 'self' (did you mean '--t-init'?) (its parameters: --seq-len, --t-init)"
    )
    far = ParameterError("zzz", "is not a parameter of 'self'", allowed=["seq_len", "t_init"])
    assert str(far) == "zzz is not a parameter of 'self' (its parameters: seq_len, t_init)"


def test_cli_error_shows_the_flag(text_file, tiny_model_dir, tmp_path, capsys):
    code, _, err = run(
        [
            "data",
            "build",
            str(text_file),
            "-m",
            str(tiny_model_dir),
            "-o",
            str(tmp_path / "o"),
            "--seq-len",
            "32",
            "--t-init",
            "0.3",
        ],
        capsys,
    )
    assert code == 2 and "--t-init is not a parameter of" in err and "--mode" in err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------- mixtures


@pytest.mark.parametrize(
    "weights,n,expected",
    [
        ({"a": 0.5, "b": 0.25, "c": 0.25}, 10, {"a": 5, "b": 3, "c": 2}),
        ({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 8, {"a": 3, "b": 3, "c": 2}),
        ({"a": 0.9, "b": 0.1}, 3, {"a": 3, "b": 0}),
        ({"a": 0.5, "b": 0.5}, 1, {"a": 1, "b": 0}),
    ],
)
def test_exact_counts_sum_to_n_by_largest_remainder(weights, n, expected):
    counts = exact_counts(weights, n)
    assert counts == expected and sum(counts.values()) == n


def test_mixture_has_exact_counts_and_full_provenance(tiny_tokenizer, tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("\n\n".join(corpus_text(120, seed=1)))
    second.write_text("\n\n".join(corpus_text(120, seed=2)))
    name = f"mix:{first}=0.5,{second}=0.25,random-vocab=0.25"
    sets = build_sets(name, tokenizer=tiny_tokenizer, n=10, seq_len=24, seed=4, sets=2)
    for calib in sets:
        record = calib.manifest.generator
        assert [c["count"] for c in record["components"]] == [5, 3, 2]
        origins = record["origins"]
        assert len(origins) == calib.n
        assert [sum(1 for o in origins if o[0] == i) for i in range(3)] == [5, 3, 2]
        # every window is exactly the recorded row of the recorded component set
        parts = [
            build_sets(c, tokenizer=tiny_tokenizer, n=k, seq_len=24, seed=4, sets=2)[calib.manifest.sampling.set_index]
            for c, k in ((str(first), 5), (str(second), 3), ("random-vocab", 2))
        ]
        assert calib.manifest.parents == [p.set_id for p in parts]
        for row, (component, source_row) in enumerate(origins):
            assert np.array_equal(calib.input_ids[row], parts[component].input_ids[source_row])
    again = build_sets(name, tokenizer=tiny_tokenizer, n=10, seq_len=24, seed=4, sets=2)
    assert [s.sha256 for s in again] == [s.sha256 for s in sets]
    assert sets[0].set_id != sets[1].set_id


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("mix:wiki=0.5,code=0.4", "weights must sum to 1, got 0.9"),
        ("mix:wiki=0.5,nosuch=0.5", "unknown component"),
        ("mix:wiki=0.5,code", "is not NAME=WEIGHT"),
        ("mix:wiki=1.5,code=-0.5", "must be positive"),
    ],
)
def test_bad_mixtures_are_refused_before_building(name, fragment):
    with pytest.raises(CalibenchError, match=fragment):
        make_params(name, n=4)


# ----------------------------------------------------------------- any hub dataset


def test_hub_dataset_reads_the_mirror_and_records_the_revision(tiny_tokenizer, hub_mirror):
    default = build_set("hub:acme/corpus", tokenizer=tiny_tokenizer, n=4, seq_len=24, text_field="body")
    pinned = build_set("hub:acme/corpus", tokenizer=tiny_tokenizer, n=4, seq_len=24, text_field="body", revision="v2")
    assert default.manifest.source.spec["revision"] is None and pinned.manifest.source.spec["revision"] == "v2"
    assert default.sha256 != pinned.sha256  # another revision, other text
    again = build_set("hub:acme/corpus", tokenizer=tiny_tokenizer, n=4, seq_len=24, text_field="body", revision="v2")
    assert again.sha256 == pinned.sha256
    streamed = build_set(
        "hub:acme/corpus", tokenizer=tiny_tokenizer, n=4, seq_len=24, text_field="body", streaming=True, stream_docs=50
    )
    assert streamed.manifest.source.spec["streaming"] == {"first_rows": 50}


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"revision": "nope"}, "revision 'nope' of acme/corpus does not exist in the hub mirror"),
        ({"text_field": "text"}, "text_field 'text' is not a column"),
    ],
)
def test_hub_errors_name_the_parameter(tiny_tokenizer, hub_mirror, kwargs, fragment):
    with pytest.raises(ParameterError, match=fragment):
        build_set("hub:acme/corpus", tokenizer=tiny_tokenizer, n=4, seq_len=24, **{"text_field": "body", **kwargs})


# ----------------------------------------------------------------- chat data


def test_chat_windows_are_the_template_rendering(chat_tokenizer, conversations):
    calib = build_set("chat", tokenizer=chat_tokenizer, data=str(conversations), n=6, seq_len=700, bos="never")
    rows = [json.loads(line)["messages"] for line in conversations.read_text().splitlines()]
    rendered = {tuple(chat_tokenizer.apply_chat_template(r, tokenize=True, return_dict=False)) for r in rows}
    for ids, mask in zip(calib.input_ids, calib.attention_mask):
        window = tuple(ids[mask.astype(bool)].tolist())
        # one conversation per window from its start: whole, or cut at seq_len
        assert any(r[: len(window)] == window and len(window) in (len(r), calib.seq_len) for r in rendered)
    assert (calib.attention_mask.sum(axis=1) < calib.seq_len).any()  # some are whole (padded)
    record = calib.manifest.generator["chat_template"]
    assert len(record["sha256"]) == 64
    assert calib.manifest.sampling.mode == "sample"


def test_chat_needs_a_template(tiny_tokenizer, conversations):
    tiny_tokenizer.chat_template = None
    with pytest.raises(CalibenchError, match="no chat template"):
        build_set("chat", tokenizer=tiny_tokenizer, data=str(conversations), n=2, seq_len=64)


# ----------------------------------------------------------------- determinism, per builder


@pytest.mark.parametrize("builder", ["file", "file-sample", "random-vocab", "mix", "hub", "chat", "self"])
def test_same_inputs_and_seed_give_a_byte_identical_set(
    builder, chat_tokenizer, text_file, conversations, hub_mirror, tiny_model_dir, tmp_path
):
    name, extra = {
        "file": (str(text_file), {}),
        "file-sample": (str(text_file), {"mode": "sample"}),
        "random-vocab": ("random-vocab", {}),
        "mix": (f"mix:{text_file}=0.5,random-vocab=0.5", {}),
        "hub": ("hub:acme/corpus", {"text_field": "body"}),
        "chat": ("chat", {"data": str(conversations)}),
        "self": ("self", {"batch_size": 2}),
    }[builder]
    model = str(tiny_model_dir) if builder == "self" else None
    built = [build_set(name, model=model, tokenizer=chat_tokenizer, n=4, seq_len=24, seed=3, **extra) for _ in range(2)]
    for index, calib in enumerate(built):
        calib.save(tmp_path / f"s{index}")
    files = sorted(p.name for p in (tmp_path / "s0").iterdir())
    for file in files:
        assert (tmp_path / "s0" / file).read_bytes() == (tmp_path / "s1" / file).read_bytes(), file
    other = build_set(name, model=model, tokenizer=chat_tokenizer, n=4, seq_len=24, seed=4, **extra)
    assert other.sha256 != built[0].sha256


# ----------------------------------------------------------------- CLI and spec, into oneshot


def _feeds_oneshot(calib: CalibrationSet, model_dir: Path, tokenizer) -> None:
    """Wanda 50% through llm-compressor's oneshot, calibrated on the set: half of every linear is zero after."""
    import torch
    from transformers import AutoModelForCausalLM

    from calibench.compress import compress

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    compress(model, calib, "wanda", tokenizer=tokenizer, sparsity=0.5)
    weight = model.model.layers[0].mlp.down_proj.weight
    assert 0.45 < float((weight == 0).float().mean()) < 0.55


@pytest.mark.parametrize("builder", ["file", "mix", "hub", "chat", "random-vocab", "self"])
def test_cli_build_loads_verifies_and_feeds_oneshot(
    builder, tiny_model_dir, text_file, conversations, hub_mirror, tmp_path, capsys
):
    from calibench.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    args = {
        "file": [str(text_file)],
        "mix": [f"mix:{text_file}=0.75,random-vocab=0.25"],
        "hub": ["hub:acme/corpus", "--text-field", "body", "--revision", "v2"],
        "chat": ["chat", "--data", str(conversations), "--chat-template", str(_template_file(tmp_path))],
        "random-vocab": ["random-vocab"],
        "self": ["self", "--batch-size", "2", "--t-init", "0.7"],
    }[builder]
    out = tmp_path / "set"
    code, stdout, err = run(
        ["data", "build", *args, "-m", str(tiny_model_dir), "-o", str(out), "--n", "4", "--seq-len", "24"], capsys
    )
    assert code == 0, err
    calib = CalibrationSet.load(out, tokenizer=tokenizer)
    assert calib.n == 4 and calib.seq_len == 24 and calib.set_id in stdout
    _feeds_oneshot(calib, tiny_model_dir, tokenizer)


def _template_file(tmp_path: Path) -> Path:
    path = tmp_path / "template.jinja"
    path.write_text(CHAT_TEMPLATE)
    return path


def test_study_spec_takes_every_builder(tiny_model_dir, text_file, conversations, hub_mirror, tmp_path):
    from calibench.study import run_study
    from calibench.study.store import Store

    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n\n".join(corpus_text(40, seed=9)))
    template = _template_file(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""name: builders
models: [{tiny_model_dir}]
methods:
  - name: wanda
    params: {{sparsity: 0.5}}
sources:
  - name: {text_file}
    params: {{mode: sample}}
  - name: "mix:{text_file}=0.5,random-vocab=0.5"
  - name: "hub:acme/corpus"
    params: {{text_field: body}}
  - name: chat
    params: {{data: {conversations}, chat_template: {template}}}
  - name: self
    params: {{batch_size: 2}}
n: [4]
seq_len: [24]
eval:
  tasks: [ppl:{heldout}]
  ppl_seq_len: 24
  ppl_max_windows: 2
""")
    summary = run_study(spec, tmp_path / "study")
    assert summary.failed == 0 and summary.done == 6, summary
    store = Store(tmp_path / "study")
    assert len(store.all_set_ids()) == 5


def test_self_with_chat_prompts_through_the_registry(chat_tokenizer, tiny_model_dir, tmp_path):
    """`self --prompting chat` is the same builder, distinct in its record, deterministic, seq_len exactly."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("say hello\nname a colour\ncount to three\n")
    kwargs = dict(
        model=str(tiny_model_dir),
        tokenizer=chat_tokenizer,
        n=2,
        seq_len=64,
        seed=1,
        prompting="chat",
        prompts=str(prompts),
        batch_size=2,
        max_new_tokens=8,
    )
    first, again = build_set("self", **kwargs), build_set("self", **kwargs)
    assert first.sha256 == again.sha256 and first.input_ids.shape == (2, 64)
    assert first.manifest.generator["prompting"] == "chat"
    assert first.manifest.source.spec["prompting"] == "chat"
    bos_only = build_set("self", model=str(tiny_model_dir), tokenizer=chat_tokenizer, n=2, seq_len=64, seed=1)
    assert "prompting" not in bos_only.manifest.source.spec  # the paper's setting records as before
    with pytest.raises(ParameterError, match="^system applies to prompting chat only"):
        make_params("self", system="be brief")
