"""In-memory data in the Python API: a datasets.Dataset, an IterableDataset, a list of texts or conversations.

Before: ``build_sets(ds)`` said "source must be a non-empty name" and ``build_calibration_sets(ds)`` raised a
raw TypeError.  Now each is a source with the same windows as the same texts written to a file, and a
manifest that names the content by its sha256 (``memory:<12 hex digits>``).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from calibench.core.errors import CalibenchError, ParameterError
from calibench.data.builders import build_sets
from calibench.data.draw import build_calibration_sets
from conftest import corpus_text, make_tokenizer

CHATML = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
SIZES = {"n": 4, "seq_len": 32, "seed": 3}


def content_sha256(texts: list[str]) -> str:
    """The fingerprint as documented: each text's UTF-8 length (8 bytes, little-endian) then the text, in order."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return corpus_text(80, seed=5)


@pytest.fixture
def jsonl(tmp_path, texts):
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def same_windows(a, b) -> bool:
    return a.input_ids.tobytes() == b.input_ids.tobytes() and a.attention_mask.tobytes() == b.attention_mask.tobytes()


def test_list_of_texts_gives_the_windows_of_the_same_texts_in_a_file(texts, jsonl, tiny_tokenizer):
    from_file = build_sets(str(jsonl), tokenizer=tiny_tokenizer, sets=2, **SIZES)
    in_memory = build_sets(texts, tokenizer=tiny_tokenizer, sets=2, **SIZES)
    assert all(same_windows(a, b) for a, b in zip(from_file, in_memory, strict=True))
    direct = build_calibration_sets(texts, tiny_tokenizer, **SIZES)[0]
    assert same_windows(direct, build_calibration_sets(str(jsonl), tiny_tokenizer, **SIZES)[0])
    assert not same_windows(direct, build_calibration_sets(texts, tiny_tokenizer, **{**SIZES, "seed": 4})[0])


def test_provenance_is_the_content_fingerprint(texts, tiny_tokenizer):
    calib = build_sets(texts, tokenizer=tiny_tokenizer, **SIZES)[0]
    source = calib.manifest.source
    sha = content_sha256(texts)
    assert (source.name, source.kind, source.split) == (f"memory:{sha[:12]}", "memory", "all")
    assert source.spec == {"content_sha256": sha, "documents": len(texts), "object": "list"}
    again = build_sets(list(texts), tokenizer=tiny_tokenizer, **SIZES)[0]
    assert again.set_id == calib.set_id  # same content, same seed: the same set
    swapped = [texts[1], texts[0], *texts[2:]]
    other = build_sets(swapped, tokenizer=tiny_tokenizer, **SIZES)[0]
    assert other.manifest.source.name != source.name  # order is part of the content


def test_a_dataset_is_a_source(texts, tiny_tokenizer):
    import datasets

    expected = build_calibration_sets(texts, tiny_tokenizer, **SIZES)[0]
    ds = datasets.Dataset.from_dict({"text": texts, "id": list(range(len(texts)))})
    got = build_sets(ds, tokenizer=tiny_tokenizer, **SIZES)[0]
    assert same_windows(got, expected)
    assert got.manifest.source.spec["object"] == "datasets.Dataset"
    assert got.manifest.source.name == expected.manifest.source.name
    assert same_windows(build_calibration_sets(ds, tiny_tokenizer, **SIZES)[0], expected)

    renamed = datasets.Dataset.from_dict({"body": texts})
    assert same_windows(build_sets(renamed, tokenizer=tiny_tokenizer, text_field="body", **SIZES)[0], expected)
    with pytest.raises(ParameterError, match=r"'text' is not a column of the dataset \(columns: body\)"):
        build_sets(renamed, tokenizer=tiny_tokenizer, **SIZES)


def test_an_iterable_dataset_is_read_up_to_stream_docs_and_says_so(texts, tiny_tokenizer):
    import datasets

    stream = datasets.Dataset.from_dict({"text": texts}).to_iterable_dataset()
    whole = build_sets(stream, tokenizer=tiny_tokenizer, **SIZES)[0]
    assert same_windows(whole, build_calibration_sets(texts, tiny_tokenizer, **SIZES)[0])
    assert whole.manifest.source.spec["truncated"] is False
    with pytest.warns(UserWarning, match="read the first 30 items of the in-memory data and left the rest"):
        first = build_sets(stream, tokenizer=tiny_tokenizer, stream_docs=30, **{**SIZES, "seq_len": 16})[0]
    spec = first.manifest.source.spec
    assert (spec["object"], spec["read_first"], spec["truncated"]) == ("datasets.IterableDataset", 30, True)
    assert spec["content_sha256"] == content_sha256(texts[:30])
    with pytest.warns(UserWarning, match="stream_docs="):
        generator = build_sets((t for t in texts), tokenizer=tiny_tokenizer, stream_docs=30, **{**SIZES, "seq_len": 16})
    assert same_windows(generator[0], first) and generator[0].manifest.source.spec["object"] == "iterable"


def conversations() -> list[list[dict[str, str]]]:
    return [
        [{"role": "user", "content": f"question {i}: " + t}, {"role": "assistant", "content": t[::-1]}]
        for i, t in enumerate(corpus_text(12, seed=9))
    ]


def test_conversations_render_with_the_chat_template_like_a_chat_file(tmp_path):
    import datasets

    tok = make_tokenizer(extra_specials=("<|im_start|>", "<|im_end|>"))
    tok.chat_template = CHATML
    convs = conversations()
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs), encoding="utf-8")
    sizes = {"n": 4, "seq_len": 24, "seed": 1}
    from_file = build_sets("chat", data=str(path), tokenizer=tok, **sizes)[0]
    in_memory = build_sets(convs, tokenizer=tok, **sizes)[0]
    assert same_windows(in_memory, from_file)
    assert in_memory.manifest.sampling.mode == "sample"  # one conversation a window, as for a chat file
    source = in_memory.manifest.source
    assert source.kind == "chat" and source.name.startswith("memory:")
    assert source.spec["chat_template"]["sha256"] == hashlib.sha256(CHATML.encode()).hexdigest()
    column = datasets.Dataset.from_dict({"messages": convs})
    assert same_windows(build_sets(column, tokenizer=tok, **sizes)[0], in_memory)

    plain = make_tokenizer()
    with pytest.raises(CalibenchError, match="has no chat template"):
        build_sets(convs, tokenizer=plain, **sizes)


def test_what_is_not_a_source_is_one_line(tiny_tokenizer):
    with pytest.raises(ParameterError, match="must be a name or in-memory data") as err:
        build_sets(42, tokenizer=tiny_tokenizer, **SIZES)
    assert "\n" not in str(err.value)
    with pytest.raises(ParameterError, match="has no items"):
        build_sets([], tokenizer=tiny_tokenizer, **SIZES)
    with pytest.raises(ParameterError, match="item 1 is int, not a string"):
        build_calibration_sets(["a text", 7], tiny_tokenizer, **SIZES)
    with pytest.raises(ParameterError, match="is not a parameter of 'in-memory data'"):
        build_sets(["a text"], tokenizer=tiny_tokenizer, colour="blue", **SIZES)
    with pytest.raises(ParameterError, match="stream_docs"):
        build_sets(iter(["a"]), tokenizer=tiny_tokenizer, stream_docs=0, **SIZES)
    assert np.array_equal(
        build_sets(("a b c d e f g h " * 40,), tokenizer=tiny_tokenizer, n=1, seq_len=8)[0].input_ids.shape, (1, 8)
    )
