"""Vocabulary pruning for causal LMs: keep only the embedding (and head) rows a workload uses.

Williams & Aletras showed that a task uses a small part of a vocabulary; their
code prunes encoder input embeddings.  On a decoder LM with tied input and
output embeddings that breaks the tie and saves nothing, so this package
does it for causal LMs, tied or not:

* :func:`collect`: count the token ids of calibration sets, text, sources and
  lm-eval tasks (as lm-eval renders them), plus the always-kept ids, into a
  :class:`Vocabulary` file tied to its tokenizer;
* :func:`prune`: shrink the embedding and head in place, in ``restricted``
  or ``exact-input`` mode (:mod:`.modes` says exactly what each changes);
  tokenizer ids in, full-width logits out;
* :func:`save` / :func:`load` / :func:`restore`: a loadable directory
  (a compact HF checkpoint plus ``vocab.json``), and the original back bit
  for bit;
* :class:`MemoryReport`: tensor-storage bytes before and after.
"""

from calibench.vocab.checkpoint import attach_dir, is_pruned_dir, load, read_record, restore, save
from calibench.vocab.collect import Inputs, collect, from_ids
from calibench.vocab.hooks import TokenOutsideVocabularyError
from calibench.vocab.keepset import Vocabulary
from calibench.vocab.memory import MemoryReport, measure
from calibench.vocab.modes import MODES
from calibench.vocab.prune import PrunedVocab, PruneRecord, attach, is_pruned, prune, unprune

__all__ = [
    "MODES", "Inputs", "MemoryReport", "PruneRecord", "PrunedVocab", "TokenOutsideVocabularyError", "Vocabulary",
    "attach", "attach_dir", "collect", "from_ids", "is_pruned", "is_pruned_dir", "load", "measure", "prune",
    "read_record", "restore", "save", "unprune",
]  # fmt: skip
