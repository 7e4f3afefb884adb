"""Per-item results: one small dict per document (or perplexity window), pairable across runs.

lm-eval's logged samples (``log_samples=True``) carry the whole document,
every request and every response, once per filter.  calibench keeps per
document what an analysis needs and folds the filters together:

* ``doc_id`` and ``doc_hash`` (lm-eval's: sha256 of the document's JSON), so
  the same item can be paired across models, methods and calibration sets
  (paired bootstrap, McNemar) even when ``doc_id`` orders differ;
* ``prompt_hash`` (lm-eval's, of the first request's context) and ``target``;
* the model's answer: for multiple-choice tasks the loglikelihood of every
  choice, the argmax (``prediction``) and the index of the right choice
  (``gold``, as lm-eval resolves the target); for loglikelihood tasks the
  loglikelihood and whether the continuation was the greedy one; for
  generative tasks the generated text (``response``) and the answer each
  filter extracted from it (``filtered``: ``{"strict-match": "18", ...}``);
* ``metrics``: each per-item metric under the row label of its metric
  (``acc``, ``acc_norm``, ``exact_match,strict-match``).  For metrics lm-eval
  aggregates by mean, the mean over items is the row's value; for the others
  (``perplexity``, ``word_perplexity``, ``bits_per_byte``) the per-item value
  is what lm-eval aggregates (a loglikelihood, a (loglikelihood, length) pair).

Perplexity tasks give one item per window: ``window``, ``nll`` (mean NLL of
its predicted tokens) and ``tokens``; every window predicts the same number
of tokens, so ``exp(mean(nll))`` is the perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Item = dict[str, Any]
POSITION = "position"  # an item's position in its task's (shuffled) order, set on the items of a block


@dataclass(frozen=True)
class ItemBlock:
    """Items at positions ``[start, stop)`` of a task, in a seeded shuffle of its items (task order when unseeded).

    Adaptive evaluation scores a task in blocks of positions; the order is a
    permutation of the task's n items by ``seed`` alone, so every cell of a
    model sees the same items at the same positions (pairing holds), and the
    items of consecutive blocks are a random sample without replacement,
    which the anytime-valid tests assume (perplexity windows in text order
    are not: neighbouring windows come from the same document).
    """

    start: int
    stop: int
    seed: int | None = None

    def order(self, n: int) -> np.ndarray:
        """Item index at each position of a task with ``n`` items."""
        return np.arange(n) if self.seed is None else np.random.default_rng(self.seed).permutation(n)

    def chosen(self, n: int) -> np.ndarray:
        """Item indices of this block, by position (empty past the task's end)."""
        return self.order(n)[min(self.start, n) : min(self.stop, n)]


def metric_label(metric: str, filter_name: str) -> str:
    """The row label of a metric: ``acc`` for lm-eval's unfiltered ``acc,none``, else ``metric,filter``."""
    return metric if filter_name == "none" else f"{metric},{filter_name}"


GoldOf = Callable[[dict[str, Any], Any], Any]


def items_from_lm_eval(logged: list[dict[str, Any]], output_type: str, gold_of: GoldOf | None = None) -> list[Item]:
    """calibench's per-item dicts from lm-eval's logged samples of one task, in doc order.

    ``gold_of(doc, target)`` gives a multiple-choice item's right choice index.
    """
    items: dict[int, Item] = {}
    for sample in logged:
        doc_id = int(sample["doc_id"])
        item = items.get(doc_id)
        if item is None:
            item = items[doc_id] = {
                "doc_id": doc_id,
                "doc_hash": sample.get("doc_hash"),
                "prompt_hash": sample.get("prompt_hash"),
                "target": _plain(sample.get("target")),
                **_answer(sample, output_type),
                "metrics": {},
            }
            if output_type == "multiple_choice" and gold_of is not None:
                item["gold"] = _plain(gold_of(sample.get("doc") or {}, sample.get("target")))
        filter_name = str(sample.get("filter", "none"))
        if output_type == "generate_until":
            filtered = sample.get("filtered_resps") or [None]
            item.setdefault("filtered", {})[filter_name] = _plain(filtered[0])
        for metric in sample.get("metrics", []):
            item["metrics"][metric_label(metric, filter_name)] = _plain(sample.get(metric))
    return [items[k] for k in sorted(items)]


def _answer(sample: dict[str, Any], output_type: str) -> dict[str, Any]:
    resps = sample.get("resps") or []
    if output_type == "multiple_choice":
        lls = [float(_first(r)[0]) for r in resps]
        best = max(range(len(lls)), key=lls.__getitem__) if lls else None
        return {"choices": [args[1] for args in sample.get("arguments", [])], "loglikelihoods": lls, "prediction": best}
    if output_type == "loglikelihood":
        ll, greedy = _first(resps[0]) if resps else (None, None)
        return {"loglikelihood": _plain(ll), "is_greedy": _plain(greedy)}
    if output_type == "loglikelihood_rolling":
        value = _first(resps[0]) if resps else None
        return {"loglikelihood": _plain(value[0] if isinstance(value, (list, tuple)) else value)}
    if output_type == "generate_until":
        return {"response": _plain(_first(resps[0])) if resps else None}
    return {"resps": _plain(resps)}


def _first(resp: Any) -> Any:
    """A request's response: lm-eval keeps a list of ``repeats`` responses per request."""
    return resp[0] if isinstance(resp, list) and resp else resp


def _plain(value: Any) -> Any:
    """JSON-ready: tuples as lists, numpy scalars as Python numbers, non-finite floats kept (the writer nulls them)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return float(value)  # numpy's float64 is a float subclass
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


def window_items(nll_per_window: Any, tokens_per_window: Any, block: ItemBlock | None = None,
                 windows: Any = None) -> list[Item]:  # fmt: skip
    """Per-window items of a perplexity task: mean NLL of each window's predicted tokens.

    With a ``block``, ``windows`` are the window numbers scored (by
    position), and each item also gets its ``position``.
    """
    out = []
    for i, (nll, tokens) in enumerate(zip(nll_per_window, tokens_per_window)):
        n = int(tokens)
        item = {"window": i if windows is None else int(windows[i]), "nll": float(nll) / n if n else math.nan,
                "tokens": n}  # fmt: skip
        if block is not None:
            item[POSITION] = block.start + i
        out.append(item)
    return out


MEAN_METRICS = ("acc", "acc_norm", "exact_match")  # per-item metrics whose row is the mean over items


def rows_from_items(task: str, items: list[Item], perplexity: bool) -> list[dict[str, Any]]:
    """A task's rows recomputed from its per-item results (the union of an adaptive study's blocks).

    Perplexity: ``exp`` of the token-weighted mean window NLL, with the
    delta-method standard error over windows (as :func:`score_windows`);
    other tasks: the mean of each per-item metric lm-eval aggregates by mean,
    with ``std(ddof=1) / sqrt(n)`` (lm-eval's ``mean_stderr``).  Metrics
    that lm-eval aggregates otherwise are left out (they cannot be pooled
    from items here).
    """
    if not items:
        return []
    n = len(items)
    if perplexity:
        nll = np.array([float(i["nll"]) for i in items])
        tokens = np.array([int(i["tokens"]) for i in items])
        ppl = float(np.exp(np.sum(nll * tokens) / max(1, int(tokens.sum()))))
        stderr = ppl * float(np.std(nll, ddof=1) / math.sqrt(n)) if n > 1 else None
        return [{"task": task, "metric": "perplexity", "value": ppl, "stderr": stderr, "n": n, "limit": None}]
    rows = []
    names = sorted({m for i in items for m in (i.get("metrics") or {})})
    for name in names:
        if name.split(",")[0] not in MEAN_METRICS:
            continue
        values = np.array([float(i["metrics"][name]) for i in items if name in (i.get("metrics") or {})])
        stderr = float(np.std(values, ddof=1) / math.sqrt(values.size)) if values.size > 1 else None
        rows.append({"task": task, "metric": name, "value": float(values.mean()), "stderr": stderr,
                     "n": int(values.size), "limit": None})  # fmt: skip
    return rows
