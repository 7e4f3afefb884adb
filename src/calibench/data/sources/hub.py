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

from calibench.core.errors import CalibenchError
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


def _load(corpus: HubCorpus, split: str) -> Any:
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
    except (ConnectionError, OSError, ValueError, FileNotFoundError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CalibenchError(
            f"could not load hub corpus '{corpus.name}' ({corpus.repo}): {reason}; offline, use an offline "
            f"source (wiki, science, math, code), a local file, or set ${MIRROR_ENV}"
        ) from None


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
