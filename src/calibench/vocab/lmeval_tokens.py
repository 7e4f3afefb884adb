"""The token ids lm-eval sends to a model for a task, without running the model.

To be exact, the ids are not re-derived from the task's documents: the task is
built the way ``calibench eval`` builds it (online, or the offline mirror
with lm-eval's own YAML) and scored by lm-eval's ``simple_evaluate`` against
a recording ``HFLM``.  HFLM does all of its own encoding (context and
continuation split, trailing-space moves, BOS/prefix token, chat template,
few-shot examples, rolling windows); only the two methods that would run the
network are replaced by ones that write down the ids and return dummies.
The network itself is a weightless skeleton on the ``meta`` device.

Generative tasks record their prompts; what a model would generate is not
known in advance (see the docs on exact-input mode and generation).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from calibench.core import progress
from calibench.core.connectivity import Connectivity, decide
from calibench.core.settings import DEFAULTS
from calibench.evaluation import lmeval
from calibench.evaluation.api import lm_eval_options
from calibench.evaluation.kinds.perplexity import load_heldout
from calibench.evaluation.perplexity import tokenize_joined
from calibench.evaluation.tasks import LM_EVAL_KIND, parse_tasks


def _recording_lm(tokenizer: Any, config: Any) -> Any:
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    class RecordingLM(HFLM):
        """HFLM whose scoring writes down token ids instead of running the model."""

        recorded: list[list[int]]

        def _loglikelihood_tokens(self, requests: Any, disable_tqdm: bool = False, override_bs: Any = None) -> Any:
            for _strings, context, continuation in requests:
                self.recorded.append([*context, *continuation])
            return [(0.0, False)] * len(requests)

        def generate_until(self, requests: Any, disable_tqdm: bool = False) -> list[str]:
            for request in requests:
                self.recorded.append(list(self.tok_encode(request.args[0])))
            return [""] * len(requests)

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    lm = RecordingLM(pretrained=skeleton, tokenizer=copy.deepcopy(tokenizer), batch_size=1)
    lm.recorded = []
    return lm


@contextlib.contextmanager
def _no_tqdm() -> Iterator[None]:
    """lm-eval's own bars (request building, tokenizing) off: tqdm reads TQDM_DISABLE only at import."""
    from tqdm import tqdm

    original = tqdm.__init__

    def silent(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    tqdm.__init__ = silent
    try:
        yield
    finally:
        tqdm.__init__ = original


def task_token_ids(tokenizer: Any, config: Any, tasks: str | list[str], *, limit: int | None = None,
                   num_fewshot: int | None = 0, apply_chat_template: bool | str = False,
                   offline: bool | None = DEFAULTS.offline,
                   ) -> tuple[list[list[int]], list[dict[str, Any]]]:  # fmt: skip
    """Every request's token ids (context + continuation) of the lm-eval tasks, and per-task notes.

    Perplexity tasks (``ppl:NAME``) contribute the tokens of their held-out text.
    """

    requests = parse_tasks(tasks, offline=offline)
    options = lm_eval_options(num_fewshot, apply_chat_template, None, False, None)
    lm_requests = [r for r in requests if r.kind == LM_EVAL_KIND]
    needs_hub = bool(lm_requests) or any(not r.heldout.offline for r in requests if r.kind == "perplexity")
    conn = decide(offline) if needs_hub else Connectivity(True, "no hub data requested")
    sequences: list[list[int]] = []
    notes: list[dict[str, Any]] = []
    for request in requests:
        if request.kind != "perplexity":
            continue
        record, texts = load_heldout(request, conn)
        if record.status != "ok":
            notes.append({"task": request.name, "skipped": record.reason})
            continue
        ids = list(tokenize_joined(texts, tokenizer, request.heldout.joiner))
        sequences.append(ids)
        notes.append({"task": request.name, "kind": "perplexity", "tokens": len(ids)})
    if lm_requests:
        with lmeval.quiet_lm_eval(False), _no_tqdm(), contextlib.ExitStack() as stack:
            specs = [r.lm_eval for r in lm_requests if r.lm_eval is not None]  # all of them: their kind is lm_eval
            prepared = lmeval.prepare(specs, conn.offline, conn.reason, limit,
                                      num_fewshot=options.num_fewshot)  # fmt: skip
            lm = _recording_lm(tokenizer, config)
            bar = stack.enter_context(progress.task("counting lm-eval requests", total=len(prepared), unit="tasks"))
            for prep in prepared:
                bar.advance()
                if prep.task is None:
                    notes.append({"task": prep.spec.name, "skipped": prep.record.reason})
                    continue
                before = len(lm.recorded)
                lmeval.run(lm, prep, prep.record.limit, bootstrap_iters=0, options=options)
                new = lm.recorded[before:]
                notes.append({"task": prep.spec.name, "kind": "lm-eval", "mode": prep.record.mode,
                              "items": prep.record.n_evaluated, "requests": len(new),
                              "tokens": sum(len(s) for s in new), "limit": prep.record.limit})  # fmt: skip
            sequences.extend(lm.recorded)
    return sequences, notes
