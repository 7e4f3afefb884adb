"""Mixtures: ``mix:wiki=0.5,code=0.25,self=0.25``, exact counts per component, every window's origin recorded.

Counts are apportioned by the largest-remainder rule on ``n`` (ties go to
the component listed first), so ``n = 10`` at 0.5/0.25/0.25 gives 5/3/2 and
the counts always sum to ``n``.  Each component builds ``sets`` sets of its
count with the mixture's seed and sequence length (text components draw them
disjoint, as usual); mixture set j joins the components' set j and shuffles
the rows with a generator seeded by (seed, j).  The manifest lists the
components (weight, count, set id as parent) and, per window, the component
and row it came from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calibench.core.errors import ParameterError
from calibench.data.builders.params import BOS_POLICY
from calibench.data.builders.registry import make_params, resolve
from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord
from calibench.data.tokenizer import resolve_bos

MIX_PREFIX = "mix:"
TOLERANCE = 1e-6


def parse_mix_name(name: str) -> dict[str, float]:
    """``mix:a=0.5,b=0.5`` -> {"a": 0.5, "b": 0.5} (validated later with the parameters)."""
    body = name[len(MIX_PREFIX) :]
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        component, sep, weight = part.rpartition("=")
        if not sep or not component:
            raise ParameterError("components", f"'{part}' is not NAME=WEIGHT (e.g. mix:wiki=0.5,code=0.5)")
        try:
            value = float(weight)
        except ValueError:
            raise ParameterError("components", f"weight '{weight}' of '{component}' is not a number") from None
        if component in weights:
            raise ParameterError("components", f"'{component}' is listed twice")
        weights[component] = value
    return weights


def check_weights(weights: dict[str, float]) -> None:
    if len(weights) < 1:
        raise ParameterError("components", "must name at least one component (e.g. mix:wiki=0.5,code=0.5)")
    for component, weight in weights.items():
        if not weight > 0:
            raise ParameterError("components", f"weight of '{component}' must be positive, got {weight}")
    total = sum(weights.values())
    if abs(total - 1.0) > TOLERANCE:
        listing = ", ".join(f"{k}={v:g}" for k, v in weights.items())
        raise ParameterError("components", f"weights must sum to 1, got {total:g} ({listing})")


def exact_counts(weights: dict[str, float], n: int) -> dict[str, int]:
    """Largest-remainder apportionment of ``n`` windows; sums to ``n`` exactly."""
    quotas = {k: w * n for k, w in weights.items()}
    counts = {k: int(np.floor(q + TOLERANCE)) for k, q in quotas.items()}
    left = n - sum(counts.values())
    order = sorted(weights, key=lambda k: (-(quotas[k] - counts[k]), list(weights).index(k)))
    for k in order[:left]:
        counts[k] += 1
    return counts


def build_mixture(p: Any, ctx: Any) -> list[Any]:

    check_weights(p.components)
    counts = exact_counts(p.components, p.n)
    add_bos = resolve_bos(ctx.tokenizer, BOS_POLICY[p.bos])
    parts: dict[str, list[Any]] = {}
    for component, count in counts.items():
        if count == 0:
            continue
        builder, _ = _component_builder(component)
        extra = {"bos": p.bos} if "bos" in builder.params.model_fields else {}
        _, cparams = make_params(component, n=count, seq_len=p.seq_len, seed=p.seed, sets=p.sets, **extra)
        parts[component] = builder.run(cparams, ctx)

    name = MIX_PREFIX + ",".join(f"{k}={v:g}" for k, v in p.components.items())
    result = []
    for j in range(p.sets):
        ids, masks, origins, windows, parents = [], [], [], [], []
        for index, built in enumerate(parts.values()):
            calib = built[j]
            ids.append(calib.input_ids)
            masks.append(calib.attention_mask)
            recorded = calib.manifest.sampling.windows
            for row in range(calib.n):
                origins.append((index, row))
                windows.append(tuple(recorded[row]) if row < len(recorded) else (-1, -1, -1))
            parents.append(calib.set_id)
        order = np.random.default_rng([p.seed, j]).permutation(sum(len(a) for a in ids))
        all_ids, all_masks = np.concatenate(ids)[order], np.concatenate(masks)[order]
        components = [
            {
                "name": k,
                "weight": p.components[k],
                "count": counts[k],
                "set_id": parts[k][j].set_id if k in parts else None,
                "source": parts[k][j].manifest.source.model_dump(mode="json") if k in parts else None,
            }
            for k in counts
        ]
        record = {
            "builder": "mix",
            "rule": "largest remainder on n; rows shuffled with default_rng([seed, set])",
            "components": components,
            "origins": [list(origins[i]) for i in order],
        }
        source = SourceRecord(
            name=name, kind="mixture", split="mixed", spec={"components": {k: p.components[k] for k in counts}}
        )
        sampling = SamplingRecord(
            mode="mixed", bos=add_bos, set_index=j, num_sets=p.sets, windows=[windows[i] for i in order]
        )
        result.append(
            CalibrationSet.create(
                all_ids,
                ctx.tokenizer,
                source=source,
                sampling=sampling,
                seed=p.seed,
                attention_mask=all_masks,
                generator=record,
                parents=parents,
            )
        )
    return result


def _component_builder(component: str) -> tuple[Any, dict[str, Any]]:

    try:
        builder, carried = resolve(component)
    except ParameterError:
        raise
    except Exception as exc:  # an unknown component: say it is a component of the mixture
        from calibench.core.errors import CalibenchError

        if isinstance(exc, CalibenchError):
            raise ParameterError("components", f"has an unknown component: {exc}") from None
        raise
    if builder.name == "mix":
        raise ParameterError("components", f"'{component}' is itself a mixture: list its parts instead")
    return builder, carried
