"""Hub corpora, loaded with the real ``datasets`` code.

Each entry names the dataset exactly as the reference implementations load
it (the c4 shard GPTQ/SparseGPT/Wanda sample from, wikitext-2 raw v1, ...),
restricted to one data file where the full corpus would be a multi-GB
download.  Setting ``$CALIBENCH_HUB_MIRROR`` to a directory laid out like the
hub (``<mirror>/<owner>/<name>/<files>``) makes the same calls read from it:
that is how an institution mirrors the hub, and how the tests exercise this
exact code path without a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibench.core.connectivity import Connectivity, hub_access, is_connection_error
from calibench.core.errors import CalibenchError
from calibench.core.text import one_line
from calibench.data.sources.base import CONCAT, DOCUMENT, DatasetDocuments, Documents, TextSource

MIRROR_ENV = "CALIBENCH_HUB_MIRROR"


@dataclass(frozen=True)
class HubCorpus:
    """How to load one hub corpus: ``load_dataset(repo, config, data_files=..., split=...)``."""

    name: str
    repo: str
    description: str
    text_field: str = "text"
    config: str | None = None
    # split name -> data file pattern inside the repo; None loads the split by name
    data_files: dict[str, str] | None = None
    split_names: dict[str, str] = field(default_factory=dict)  # calibench split -> dataset split
    default_split: str = "train"
    heldout_split: str | None = None
    default_mode: str = DOCUMENT
    builder: str | None = None  # "json"/"parquet" when data files are loaded by a packaged builder


def _cached_dataset(repo: str) -> bool:
    """Whether any copy of a hub dataset may be in this machine's hub or ``datasets`` cache (a cheap look)."""
    from huggingface_hub import constants

    hub_copy = Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}"
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets")
    return hub_copy.is_dir() or (datasets_cache / repo.replace("/", "___")).is_dir()


def check_hub_dataset(repo: str, what: str, hint: str) -> Connectivity | None:
    """Before reading a hub dataset: ``None`` under a mirror, else the hub access (decided once per process).

    Offline, the hub and ``datasets`` clients read their caches only (no
    retries); with no cached copy at all this is one line at once, before
    any tokenizer or model is loaded.
    """
    if os.environ.get(MIRROR_ENV):
        return None
    access = hub_access()
    if access.offline and not _cached_dataset(repo):
        raise CalibenchError(offline_message(what, access, hint))
    return access


def offline_message(what: str, access: Connectivity, hint: str) -> str:
    return f"{what}: Couldn't reach the hub ({access.reason}) and it is not in the local datasets cache: {hint}"


def corpus_hint() -> str:
    return f"use an offline source (wiki, science, math, code), a local file, or set ${MIRROR_ENV}"


def _load(corpus: HubCorpus, split: str) -> Any:
    what = f"hub corpus '{corpus.name}' ({corpus.repo})"
    access = check_hub_dataset(corpus.repo, what, corpus_hint())
    import datasets

    mirror = os.environ.get(MIRROR_ENV)
    root = f"{Path(mirror).resolve()}/{corpus.repo}" if mirror else f"hf://datasets/{corpus.repo}"
    dataset_split = corpus.split_names.get(split, split)
    try:
        if corpus.data_files is not None:
            files = {dataset_split: f"{root}/{corpus.data_files[split]}"}
            return datasets.load_dataset(corpus.builder or "json", data_files=files, split=dataset_split)
        path = root if mirror else corpus.repo
        return datasets.load_dataset(path, corpus.config, split=dataset_split)
    except CalibenchError:
        raise
    except Exception as exc:  # datasets, the hub client, httpx and requests raise many types: each is one line
        if access is not None and access.offline:
            raise CalibenchError(offline_message(what, access, corpus_hint())) from None
        reason = "the hub cannot be reached" if is_connection_error(exc) else one_line(exc, 300)
        raise CalibenchError(f"could not load {what}: {reason}; {corpus_hint()}") from None


class HubSource(TextSource):
    kind = "hub"

    def __init__(self, corpus: HubCorpus):
        self.corpus = corpus
        self.name = corpus.name
        self.description = corpus.description
        self.splits = (
            tuple(corpus.data_files) if corpus.data_files else tuple(corpus.split_names or (corpus.default_split,))
        )
        self.default_split = corpus.default_split
        self.heldout_split = corpus.heldout_split
        self.default_mode = corpus.default_mode
        self._docs: dict[str, Documents] = {}

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"repo": self.corpus.repo, "text_field": self.corpus.text_field}
        if self.corpus.config:
            spec["config"] = self.corpus.config
        if self.corpus.data_files:
            spec["data_files"] = dict(self.corpus.data_files)
        return spec

    def preflight(self) -> None:
        check_hub_dataset(self.corpus.repo, f"hub corpus '{self.name}' ({self.corpus.repo})", corpus_hint())

    def documents(self, split: str) -> Documents:
        if split not in self._docs:
            self._docs[split] = DatasetDocuments(_load(self.corpus, split), self.corpus.text_field)
        return self._docs[split]


_SPLITS_TVT = {"train": "train", "validation": "validation", "test": "test"}

HUB_CORPORA = [
    HubCorpus(
        name="c4",
        repo="allenai/c4",
        description="C4 English, the first train shard (as sampled by GPTQ/SparseGPT/Wanda)",
        data_files={
            "train": "en/c4-train.00000-of-01024.json.gz",
            "validation": "en/c4-validation.00000-of-00008.json.gz",
        },
        heldout_split="validation",
    ),
    HubCorpus(
        name="wikitext2",
        repo="Salesforce/wikitext",
        config="wikitext-2-raw-v1",
        description="WikiText-2 raw v1 (concatenated, the wikitext convention)",
        split_names=_SPLITS_TVT,
        heldout_split="test",
        default_mode=CONCAT,
    ),
    HubCorpus(
        name="redpajama",
        repo="togethercomputer/RedPajama-Data-1T-Sample",
        description="RedPajama 1T sample (its C4 part; one JSON-lines file)",
        data_files={"train": "c4_sample.jsonl"},
    ),
    HubCorpus(
        name="slimpajama",
        repo="DKYoon/SlimPajama-6B",
        description="SlimPajama 6B sample, first train shard",
        builder="parquet",
        data_files={
            "train": "data/train-00000-of-00048*.parquet",
            "validation": "data/validation-*.parquet",
        },
        heldout_split="validation",
    ),
    HubCorpus(
        name="pile-val",
        repo="mit-han-lab/pile-val-backup",
        description="The Pile validation set (the AWQ calibration default)",
        split_names={"validation": "validation"},
        default_split="validation",
    ),
    HubCorpus(
        name="cnn_dailymail",
        repo="abisee/cnn_dailymail",
        config="3.0.0",
        text_field="article",
        description="CNN/DailyMail 3.0.0 news articles",
        split_names=_SPLITS_TVT,
        heldout_split="test",
    ),
    HubCorpus(
        name="wikipedia",
        repo="wikimedia/wikipedia",
        description="English Wikipedia 2023-11-01, first shard",
        builder="parquet",
        data_files={"train": "20231101.en/train-00000-of-00041.parquet"},
    ),
]
