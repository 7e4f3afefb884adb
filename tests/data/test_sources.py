"""Every kind of source: local files, hub corpora (through a local mirror), random vocabulary."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from calibench.core.errors import CalibenchError, CorpusTooShortError, UnknownNameError
from calibench.data.draw import build_calibration_set, build_calibration_sets
from calibench.data.sampling import intervals_overlap
from calibench.data.sources import TextSource, get_source, get_text_source, list_sources
from calibench.data.sources.hub import HUB_CORPORA, MIRROR_ENV, HubCorpus
from calibench.data.sources.random_vocab import ordinary_token_ids, special_token_ids
from conftest import corpus_text, make_tokenizer

# ----------------------------------------------------------------- local files


def write_local(path, docs, field="text"):
    suffix = path.suffix
    if suffix == ".txt":
        path.write_text("\n\n".join(docs), encoding="utf-8")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({field: d, "id": i}) for i, d in enumerate(docs)) + "\n")
    else:
        pq.write_table(pa.table({field: docs, "id": list(range(len(docs)))}), path)
    return path


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".parquet"])
def test_local_files_give_windows_of_their_text(tmp_path, tiny_tokenizer, suffix):
    docs = corpus_text(80)
    path = write_local(tmp_path / f"c{suffix}", docs)
    source = get_source(str(path))
    assert source.kind == "local"
    assert len(source.documents("all")) == len(docs)
    calib = build_calibration_set(str(path), tiny_tokenizer, n=5, seq_len=20, seed=0, mode="document")
    for (doc, start, length), row in zip(calib.manifest.sampling.windows, calib.input_ids):
        expected = tiny_tokenizer(docs[doc], add_special_tokens=False)["input_ids"][start : start + length]
        assert row.tolist() == expected
    assert calib.manifest.source.spec["file_sha256"]


def test_jsonl_text_field_is_configurable_and_checked(tmp_path, tiny_tokenizer):
    path = write_local(tmp_path / "c.jsonl", corpus_text(50), field="body")
    with pytest.raises(CalibenchError, match="--text-field"):
        build_calibration_set(str(path), tiny_tokenizer, n=2, seq_len=16)
    calib = build_calibration_set(str(path), tiny_tokenizer, n=2, seq_len=16, text_field="body")
    assert calib.manifest.source.spec["text_field"] == "body"


@pytest.mark.parametrize(
    "make",
    [
        lambda d: d / "missing.txt",
        lambda d: (d / "dir.jsonl").mkdir() or d / "dir.jsonl",
        lambda d: (d / "bad.txt").write_bytes(b"\xff\xfe\x00bad") and d / "bad.txt",
        lambda d: (d / "bad.jsonl").write_text('{"text": "ok"}\n{broken\n') and d / "bad.jsonl",
        lambda d: (d / "bad.parquet").write_bytes(b"not parquet") and d / "bad.parquet",
    ],
    ids=["missing", "directory", "not-utf8", "bad-json-line", "not-parquet"],
)
def test_unreadable_local_files_fail_with_one_line(tmp_path, tiny_tokenizer, make):
    path = make(tmp_path)
    with pytest.raises(CalibenchError) as info:
        build_calibration_set(str(path), tiny_tokenizer, n=2, seq_len=16)
    assert "\n" not in str(info.value) and str(path.name) in str(info.value)


def test_unknown_source_names_the_known_ones():
    with pytest.raises(UnknownNameError, match="did you mean 'wiki'"):
        get_source("wikki")
    assert {"c4", "wikitext2", "wiki", "code", "math", "science", "random-vocab"} <= set(list_sources())


def test_text_sources_are_had_and_token_drawing_sources_refused_in_one_line(text_file):
    assert isinstance(get_text_source("wiki"), TextSource)
    assert get_text_source(str(text_file)).documents("all").batch([0])
    with pytest.raises(CalibenchError, match="^source 'random-vocab' has no documents") as info:
        get_text_source("random-vocab")
    assert "\n" not in str(info.value)
    with pytest.raises(UnknownNameError):
        get_text_source("wikki")


# ----------------------------------------------------------------- hub corpora


def write_split_file(path, docs, field, builder):
    path.parent.mkdir(parents=True, exist_ok=True)
    if builder == "parquet" or path.suffix == ".parquet":
        pq.write_table(pa.table({field: docs}), path)
        return
    lines = "".join(json.dumps({field: d, "url": "x"}) + "\n" for d in docs)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(lines.encode()))
    else:
        path.write_text(lines)


def make_mirror(root, corpus: HubCorpus, docs_by_split):
    """Lay out a stand-in of the corpus's hub repository, as the hub stores it."""
    repo = root / corpus.repo
    if corpus.data_files:
        for split, pattern in corpus.data_files.items():
            write_split_file(
                repo / pattern.replace("*", "-0001"), docs_by_split[split], corpus.text_field, corpus.builder
            )
        return
    splits = corpus.split_names or {corpus.default_split: corpus.default_split}
    if corpus.config:
        lines = ["---", "configs:", f"- config_name: {corpus.config}", "  data_files:"]
        for split in splits.values():
            lines += [f"  - split: {split}", f"    path: {corpus.config}/{split}-*.parquet"]
        (repo).mkdir(parents=True, exist_ok=True)
        (repo / "README.md").write_text("\n".join(lines + ["---", ""]))
        folder = repo / corpus.config
    else:
        folder = repo / "data"
    for ours, theirs in splits.items():
        write_split_file(folder / f"{theirs}-00000-of-00001.parquet", docs_by_split[ours], corpus.text_field, "parquet")


@pytest.mark.parametrize("corpus", HUB_CORPORA, ids=[c.name for c in HUB_CORPORA])
def test_hub_sources_load_through_datasets_from_a_mirror(corpus, tmp_path, monkeypatch, tiny_tokenizer):
    source = get_source(corpus.name)
    docs_by_split = {split: [f"{split} {d}" for d in corpus_text(60, seed=i)] for i, split in enumerate(source.splits)}
    make_mirror(tmp_path / "mirror", corpus, docs_by_split)
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "mirror"))

    split = source.default_split
    calib = build_calibration_set(corpus.name, tiny_tokenizer, n=4, seq_len=16, seed=0, mode="document")
    assert calib.manifest.source.kind == "hub"
    assert calib.manifest.source.spec["repo"] == corpus.repo
    docs = docs_by_split[split]
    for (doc, start, length), row in zip(calib.manifest.sampling.windows, calib.input_ids):
        expected = tiny_tokenizer(docs[doc], add_special_tokens=False)["input_ids"][start : start + length]
        assert row.tolist() == expected
    if source.heldout_split:
        held = build_calibration_set(corpus.name, tiny_tokenizer, n=2, seq_len=16, split=source.heldout_split)
        assert held.manifest.source.split == source.heldout_split


def test_unreachable_hub_gives_one_line(monkeypatch, tmp_path, tiny_tokenizer):
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "empty-mirror"))
    with pytest.raises(CalibenchError) as info:
        build_calibration_set("c4", tiny_tokenizer, n=2, seq_len=16)
    assert "offline source" in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------- random vocabulary


def test_random_vocab_draws_no_special_tokens():
    tokenizer = make_tokenizer(extra_specials=("<|im_start|>", "<|im_end|>", "<tool>"))
    specials = special_token_ids(tokenizer)
    assert len(specials) == 7
    calib = build_calibration_set("random-vocab", tokenizer, n=64, seq_len=64, seed=0, bos=False)
    assert not set(np.unique(calib.input_ids).tolist()) & specials
    # close to uniform: nearly every ordinary token appears in 4096 draws over ~290 ids
    assert len(np.unique(calib.input_ids)) > 0.95 * len(ordinary_token_ids(tokenizer))


def test_random_vocab_sets_differ_and_repeat_by_seed(tiny_tokenizer):
    a = build_calibration_sets("random-vocab", tiny_tokenizer, n=4, seq_len=16, seed=0, sets=3)
    b = build_calibration_sets("random-vocab", tiny_tokenizer, n=4, seq_len=16, seed=0, sets=3)
    assert [s.sha256 for s in a] == [s.sha256 for s in b]
    assert len({s.sha256 for s in a}) == 3


# ----------------------------------------------------------------- sampling through sources


@pytest.mark.parametrize("mode", ["concat", "document"])
def test_k_sets_are_pairwise_disjoint(text_file, tiny_tokenizer, mode):
    sets = build_calibration_sets(str(text_file), tiny_tokenizer, n=4, seq_len=24, seed=5, sets=6, mode=mode)
    windows = [w for s in sets for w in s.manifest.sampling.windows]
    assert len(windows) == 24 and not intervals_overlap(windows)
    assert [s.manifest.sampling.set_index for s in sets] == list(range(6))


def test_concat_windows_are_slices_of_the_token_stream(text_file, tiny_tokenizer):
    from calibench.data.sources.base import ListDocuments
    from calibench.data.token_stream import SEPARATOR

    calib = build_calibration_set(str(text_file), tiny_tokenizer, n=5, seq_len=32, seed=2, mode="concat")
    docs = text_file.read_text().split("\n\n")
    stream = tiny_tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"]
    joined: list[int] = []
    for i, doc in enumerate(docs):
        if i:
            joined += stream
        joined += tiny_tokenizer(doc, add_special_tokens=False)["input_ids"]
    for (_, start, length), row in zip(calib.manifest.sampling.windows, calib.input_ids):
        assert row.tolist() == joined[start : start + length]
    assert isinstance(get_source(str(text_file)).documents("all"), ListDocuments)


def test_too_short_corpus_says_how_many_windows_fit(tmp_path, tiny_tokenizer):
    path = write_local(tmp_path / "small.txt", corpus_text(3))
    total = sum(len(tiny_tokenizer(d, add_special_tokens=False)["input_ids"]) for d in corpus_text(3))
    with pytest.raises(CorpusTooShortError, match=r"room for \d+ disjoint windows") as info:
        build_calibration_set(str(path), tiny_tokenizer, n=50, seq_len=64, mode="concat")
    fits = int(str(info.value).split("room for ")[1].split()[0])
    assert fits <= total // 64 + 1
    with pytest.raises(CorpusTooShortError, match="documents with at least 64 tokens"):
        build_calibration_set(str(path), tiny_tokenizer, n=50, seq_len=64, mode="document")


def test_random_punct_draws_only_punctuation_tokens_deterministically(tiny_tokenizer):
    """Paglieri et al.'s nonsense baseline: every token is punctuation (no specials), and a seed fixes the set."""
    import unicodedata

    from calibench.data.builders import build_sets
    from calibench.data.sources.random_vocab import punctuation_token_ids, special_token_ids

    allowed = punctuation_token_ids(tiny_tokenizer)
    # an independent check of the filter: decode every id of the vocabulary
    expected = []
    for token_id in range(len(tiny_tokenizer)):
        text = tiny_tokenizer.decode([token_id])
        marks = [ch for ch in text if not ch.isspace()]
        if (
            token_id not in special_token_ids(tiny_tokenizer)
            and marks
            and all(unicodedata.category(ch).startswith("P") for ch in marks)
        ):
            expected.append(token_id)
    assert list(allowed) == expected and len(expected) > 0
    first, again = (
        build_sets("random-punct", tokenizer=tiny_tokenizer, n=4, seq_len=16, seed=3, bos="never")[0] for _ in range(2)
    )
    assert first.set_id == again.set_id and (first.input_ids == again.input_ids).all()
    assert set(first.input_ids.ravel().tolist()) <= set(expected)
    other = build_sets("random-punct", tokenizer=tiny_tokenizer, n=4, seq_len=16, seed=4, bos="never")[0]
    assert other.set_id != first.set_id
