"""Every lexical metric of one summary, in one place, so tasks, comparisons and tests share the names.

Against the reference: ROUGE-1/2/L F1.  Against the source document: the same
ROUGE (``src_`` prefix), Grusky fragment coverage, density and compression,
and the share of novel 1/2/3-grams.  ``words``: the summary's length;
``repeat_3``: the share of its 3-grams that repeat an earlier one (degeneration).  Model
based scores (consistency, HaRiM+) are added by the task, since they need a
scorer; their names are listed here too, with the direction of "better".
"""

from __future__ import annotations

from calibench.summarize.fragments import fragments
from calibench.summarize.novel_ngrams import novel_ngrams
from calibench.summarize.repetition import repeated_share
from calibench.summarize.rouge import rouge_f1
from calibench.summarize.text import words

LEXICAL_METRICS = (
    "rouge1",
    "rouge2",
    "rougeL",
    "src_rouge1",
    "src_rouge2",
    "src_rougeL",
    "coverage",
    "density",
    "compression",
    "novel_1",
    "novel_2",
    "novel_3",
    "words",
    "repeat_3",
)
CONSISTENCY_METRIC = "summac_zs"
HARIM_METRICS = ("harim_plus", "harim_gain")
#: the order rows come out in
ALL_METRICS = (*LEXICAL_METRICS, CONSISTENCY_METRIC, *HARIM_METRICS)


def lexical_metrics(summary: str, source: str, reference: str) -> dict[str, float]:
    """All lexical metrics of ``summary`` (NaN where undefined, e.g. coverage of an empty summary)."""
    out = dict(rouge_f1(summary, reference))
    out.update({f"src_{k}": v for k, v in rouge_f1(summary, source).items()})
    frag = fragments(summary, source)
    out.update({"coverage": frag.coverage, "density": frag.density, "compression": frag.compression})
    out.update(novel_ngrams(summary, source))
    out["words"] = float(len(words(summary)))
    out["repeat_3"] = repeated_share(summary)
    return out
