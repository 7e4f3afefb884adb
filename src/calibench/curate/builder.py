"""The ``curated`` set builder: COLA curation (sources by capability coverage, samples by activation k-means).

The data layer names it lazily (``calibench.curate.builder:BUILDER``), so data never imports curate.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from calibench.curate.pipeline import CurationConfig, curate_seeds
from calibench.data.builders import params as P
from calibench.data.builders.context import BuildContext
from calibench.data.builders.registry import Builder


def _curated_params() -> type[P.SetParams]:
    return P.extend(
        "CuratedParams",
        P.SetParams,
        CurationConfig,
        {"n", "seq_len", "seed", "bos", "mode"},
        "COLA curation: sources by capability coverage, samples by activation-space k-means.",
        bos=(P.Bos, Field("auto", description="Prefix each window with BOS: auto follows the tokenizer.")),
        curation_mode=(
            Literal["general", "targeted"],
            Field(
                "general",
                description="general: all capabilities "
                "weigh 1.0; targeted: --target 1.0, the rest 0.2 (CurationConfig.mode).",
            ),
        ),
    )


CuratedParams = _curated_params()


def build_curated(p: Any, ctx: BuildContext) -> list[Any]:
    """COLA with k-means seeds seed, seed+1, ...: one pool and one activation capture for all k sets.

    The sets share a pool, so unlike text sources they are not guaranteed disjoint.
    """
    fields = set(CurationConfig.model_fields) - {"n", "seq_len", "seed", "bos", "mode"}
    options = {k: v for k, v in p.model_dump().items() if k in fields}
    options["mode"] = p.curation_mode
    seeds = [p.seed + index for index in range(p.sets)]
    results = curate_seeds(
        ctx.load_model(), seeds, tokenizer=ctx.tokenizer, n=p.n, seq_len=p.seq_len, bos=P.BOS_POLICY[p.bos], **options
    )
    return [result.calib for result in results]


BUILDER = Builder(
    "curated",
    "COLA: sources by capability coverage, samples by activation k-means",
    "curated",
    CuratedParams,
    build_curated,
    needs_model=True,
)
