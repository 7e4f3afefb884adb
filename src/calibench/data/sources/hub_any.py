"""Any hub dataset, ``hub:ORG/NAME[:CONFIG]``, through ``datasets.load_dataset``.

The fixed hub corpora (:mod:`.hub`) pin a repo, config and data file each;
this source takes whatever the user names, with a split, a revision and a
text field, and can stream a large corpus (reading its first
``stream_docs`` rows) instead of downloading it.  With
``$CALIBENCH_HUB_MIRROR`` the same call reads ``<mirror>/ORG/NAME`` (and
``<mirror>/ORG/NAME@REVISION`` for a revision other than the default), which
is how the tests exercise this code without a network.  The requested
revision is recorded in the manifest; ``None`` means the repo's default
branch at load time, which is not reproducible, so say which one you want
when it matters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from calibench.core.connectivity import is_connection_error
from calibench.core.errors import CalibenchError, ParameterError
from calibench.core.text import one_line
from calibench.data.sources.base import DOCUMENT, DatasetDocuments, Documents, ListDocuments, TextSource
from calibench.data.sources.hub import MIRROR_ENV, check_hub_dataset, offline_message

HUB_PREFIX = "hub:"
HUB_HINT = f"set ${MIRROR_ENV} to a local mirror or use a local file"


def parse_hub_name(name: str) -> dict[str, Any]:
    """``hub:ORG/NAME[:CONFIG]`` -> {"repo": "ORG/NAME", "config": CONFIG or None}."""
    body = name[len(HUB_PREFIX) :] if name.startswith(HUB_PREFIX) else name
    repo, _, config = body.partition(":")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise ParameterError("source", f"'{name}' is not hub:ORG/NAME[:CONFIG] (e.g. hub:allenai/c4:en)")
    return {"repo": repo, "config": config or None}


def _mirror_path(repo: str, revision: str | None) -> Path | None:
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return None
    root = Path(mirror).resolve() / repo
    if revision is None or revision == "main":
        return root
    pinned = root.parent / f"{root.name}@{revision}"
    if not pinned.is_dir():
        have = sorted(["main"] * root.is_dir() + [p.name.split("@", 1)[1] for p in root.parent.glob(f"{root.name}@*")])
        raise ParameterError(
            "revision",
            f"'{revision}' of {repo} does not exist in the hub mirror ${MIRROR_ENV} "
            f"(revisions there: {', '.join(have) or 'none'})",
        )
    return pinned


def load_hub_rows(
    repo: str, config: str | None, split: str, revision: str | None, streaming: bool, stream_docs: int
) -> Any:
    """A ``datasets.Dataset`` (or the first rows of a stream, as a Dataset) of one split."""
    import datasets

    local = _mirror_path(repo, revision)
    what = f"hub dataset {repo} (revision {revision or 'default'})"
    access = check_hub_dataset(repo, what, HUB_HINT) if local is None else None  # offline: cache only, no retries
    path = str(local) if local is not None else repo
    kwargs: dict[str, Any] = {"split": split}
    if local is None and revision is not None:
        kwargs["revision"] = revision
    try:
        if streaming:
            stream = datasets.load_dataset(path, config, streaming=True, **kwargs)
            rows = list(stream.take(stream_docs))
            return datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({})
        return datasets.load_dataset(path, config, **kwargs)
    except CalibenchError:
        raise
    except Exception as exc:  # datasets raises many types; each becomes one line
        reason = one_line(exc, 300)
        kind = type(exc).__name__
        if access is not None and access.offline:
            raise CalibenchError(offline_message(what, access, HUB_HINT)) from None
        if "Revision" in kind or "revision" in reason.lower():
            raise ParameterError("revision", f"'{revision}' of {repo} could not be found ({reason})") from None
        if local is None and (
            is_connection_error(exc)
            or "offline" in reason.lower()
            or "connect" in reason.lower()
            or isinstance(exc, (ConnectionError, OSError))
        ):
            raise CalibenchError(
                f"could not load hub dataset {repo} (revision {revision or 'default'}): {reason}; "
                f"offline, set ${MIRROR_ENV} to a local mirror or use a local file"
            ) from None
        raise CalibenchError(f"could not load hub dataset {repo} split '{split}': {reason}") from None


class AnyHubSource(TextSource):
    """One text column of any hub dataset split."""

    kind = "hub"
    default_mode = DOCUMENT

    def __init__(
        self,
        repo: str,
        config: str | None = None,
        text_field: str = "text",
        revision: str | None = None,
        streaming: bool = False,
        stream_docs: int = 10000,
    ):
        self.repo, self.config, self.text_field = repo, config, text_field
        self.revision, self.streaming, self.stream_docs = revision, streaming, stream_docs
        self.name = HUB_PREFIX + repo + (f":{config}" if config else "")
        self.description = f"hub dataset {repo}"
        self._docs: dict[str, Documents] = {}

    def check_split(self, split: str | None) -> str:
        return split or "train"  # any split the dataset has; a missing one fails at load with the reason

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "repo": self.repo,
            "config": self.config,
            "text_field": self.text_field,
            "revision": self.revision,
        }
        if self.streaming:
            spec["streaming"] = {"first_rows": self.stream_docs}
        return spec

    def preflight(self) -> None:
        if _mirror_path(self.repo, self.revision) is None:
            check_hub_dataset(self.repo, f"hub dataset {self.repo} (revision {self.revision or 'default'})", HUB_HINT)

    def rows(self, split: str) -> Any:
        return load_hub_rows(self.repo, self.config, split, self.revision, self.streaming, self.stream_docs)

    def documents(self, split: str) -> Documents:
        if split not in self._docs:
            dataset = self.rows(split)
            docs = DatasetDocuments(dataset, self.text_field)
            self._docs[split] = ListDocuments(docs.batch(range(len(docs)))) if self.streaming else docs
        return self._docs[split]
