"""The lm-eval task kind: calibench's registry names, its groups, and any other name lm-eval knows.

It is the fallback kind: a name no other kind claims is looked up here (the
registry :data:`calibench.evaluation.tasks.LM_EVAL_TASKS`, its aliases and
groups, then lm-eval's own index, :mod:`calibench.evaluation.lmeval_index`).
Prepare builds every task online or from the offline mirrors and checks the
chat template; run scores each with ``simple_evaluate`` on the chosen backend
(:mod:`calibench.evaluation.lmeval`).  It runs last: the vLLM backend loads
its own copy of the model, so the torch model of the other kinds is freed
first.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from typing import Any

from calibench.core import progress
from calibench.core.errors import CalibenchError, UnknownNameError
from calibench.core.provenance import library_versions
from calibench.evaluation import lmeval, lmeval_index
from calibench.evaluation.backends import LmInputs
from calibench.evaluation.kinds.base import EvalContext, KindOutput, TaskKind, announce
from calibench.evaluation.lmeval_output import write_lm_eval_output
from calibench.evaluation.results import EvalResult
from calibench.evaluation.tasks import (
    ALIASES,
    GROUPS,
    LM_EVAL_KIND,
    LM_EVAL_TASKS,
    LmEvalTask,
    TaskRequest,
    unknown_task_message,
)
from calibench.models import resolve_model_path


class LmEvalKind(TaskKind):
    name = LM_EVAL_KIND
    order = 90  # last: with vLLM the torch model of the other kinds is freed before lm-eval's own loads
    fallback = True

    def parse(self, name: str, offline: bool | None) -> list[TaskRequest] | None:
        if name in GROUPS:
            return [r for member in GROUPS[name] for r in self.parse(member, offline) or []]
        canonical = ALIASES.get(name, name)
        if canonical in LM_EVAL_TASKS:
            return [TaskRequest(canonical, LM_EVAL_KIND, LM_EVAL_TASKS[canonical])]
        return _from_lm_eval(name, offline)

    def known_names(self) -> list[str]:
        return [*LM_EVAL_TASKS, *GROUPS]

    def offline_names(self) -> list[str]:
        return [n for n, t in LM_EVAL_TASKS.items() if t.mirror]

    def needs_hub(self, requests: list[TaskRequest]) -> bool:
        return True

    def prepare(self, requests: list[TaskRequest], ctx: EvalContext) -> list[lmeval.PreparedTask]:
        """Every task built (skipped ones with their reason), and the chat template checked."""
        with lmeval.quiet_lm_eval(progress.enabled()):
            prepared = lmeval.prepare([r.spec for r in requests], ctx.conn.offline, ctx.conn.reason, ctx.limit,
                                      num_fewshot=ctx.options.num_fewshot)  # fmt: skip
        if any(p.task is not None for p in prepared) and ctx.options.apply_chat_template:
            check_chat_template(ctx.load_tokenizer(), ctx.options.apply_chat_template, ctx.name)
        return prepared

    def needs_model(self, prepared: list[lmeval.PreparedTask], ctx: EvalContext) -> bool:
        return any(p.task is not None for p in prepared) and ctx.backend.needs_torch_model

    def run(self, prepared: list[lmeval.PreparedTask], ctx: EvalContext) -> KindOutput:
        if not ctx.backend.needs_torch_model and ctx.model_spec is not None:
            ctx.loaded_model = None  # vLLM loads its own copy: free the perplexity model first
            _free_memory()
        out = KindOutput(records={p.spec.name: p.record for p in prepared})
        meta: dict[str, Any] = {}
        outputs: list[dict[str, Any]] = []
        inputs = LmInputs(ctx.loaded_model, ctx.tokenizer, _path_of(ctx.model), ctx.batch_size, ctx.dtype, ctx.device,
                          engine=ctx.engine)  # fmt: skip
        for done in _run_lm_eval(prepared, inputs, ctx, meta):
            out.rows.extend(done.rows)
            out.samples.update(done.samples)
            outputs.append(done.output)
        out.finish = lambda result: _finish(result, outputs, meta, ctx)
        return out


KIND = LmEvalKind()


def _finish(result: EvalResult, outputs: list[dict[str, Any]], meta: dict[str, Any], ctx: EvalContext) -> None:
    """Seeds and lm-eval's version in the result, its raw outputs kept, and its own layout written if asked."""
    result.settings["seeds"] = dict(lmeval.SEEDS)
    result.versions.update(library_versions(["lm_eval"]))
    result._lm_eval_outputs = outputs
    result._lm_eval_meta.update(meta)
    if ctx.lm_eval_out is not None and outputs:
        written = write_lm_eval_output(result, ctx.lm_eval_out)
        result.settings["lm_eval_out"] = [str(p) for p in written]


def _run_lm_eval(prepared: list[lmeval.PreparedTask], inputs: LmInputs, ctx: EvalContext,
                 meta: dict[str, Any]) -> Iterator[lmeval.TaskRun]:  # fmt: skip
    """Score the prepared tasks one ``simple_evaluate`` each, announcing progress; yields each ``TaskRun``."""
    options = ctx.options
    with lmeval.quiet_lm_eval(progress.enabled()):
        lm = None
        if any(p.task is not None for p in prepared):
            lm = ctx.backend.make(inputs)
            if options.apply_chat_template:
                meta["chat_template"] = lm.chat_template(options.apply_chat_template)
        for i, prep in enumerate(prepared, 1):
            rec = prep.record
            if prep.task is None:
                announce(f"[{i}/{len(prepared)}] {prep.spec.name}: skipped ({rec.reason})")
                continue
            shots = "" if rec.num_fewshot is None else f", {rec.num_fewshot}-shot"
            announce(f"[{i}/{len(prepared)}] {prep.spec.name}: {rec.mode}, {rec.n_evaluated} of {rec.n_total} "
                     f"items, split {rec.split}{shots}")  # fmt: skip
            yield lmeval.run(lm, prep, rec.limit, ctx.bootstrap_iters, options, items=ctx.items)


def check_chat_template(tokenizer: Any, wanted: bool | str, name: str) -> None:
    """Refuse ``--apply-chat-template`` on a tokenizer without one (or without the named one)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise CalibenchError(f"--apply-chat-template: the tokenizer of {name} has no chat template "
                             "(base models usually have none); drop the option")  # fmt: skip
    if isinstance(wanted, str) and isinstance(template, dict) and wanted not in template:
        raise CalibenchError(f"--apply-chat-template: the tokenizer of {name} has no chat template '{wanted}' "
                             f"(it has {', '.join(sorted(template))})")  # fmt: skip


def _from_lm_eval(name: str, offline: bool | None) -> list[TaskRequest]:
    """Any task, group or tag of lm-eval's (its index is consulted only here)."""
    try:
        entry = lmeval_index.lookup(name)
    except ImportError:
        raise CalibenchError(f"unknown task '{name}': other tasks than calibench's need lm-evaluation-harness "
                             "(pip install lm-eval)") from None  # fmt: skip
    if entry is None:
        raise UnknownNameError(unknown_task_message(name, offline))
    if entry.kind == "tag":  # a plain list of tasks: each is its own request (registry ones with their mirrors)
        index = lmeval_index.full_index()
        members = [m for m in entry.members if m in index and index[m].kind == "task"]
        return [TaskRequest(m, LM_EVAL_KIND, LM_EVAL_TASKS[m]) if m in LM_EVAL_TASKS
                else _lm_eval_request(index[m]) for m in members]  # fmt: skip
    return [_lm_eval_request(entry)]


def _lm_eval_request(entry: lmeval_index.IndexEntry) -> TaskRequest:
    spec = LmEvalTask(entry.name, entry.name, entry.folders, kind="group" if entry.kind == "group" else "task",
                      registered=False)  # fmt: skip
    return TaskRequest(entry.name, LM_EVAL_KIND, spec)


def _path_of(model: Any) -> str | None:
    """The directory (or hub id) of a model given as a spec."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    return str(resolve_model_path(model))


def _free_memory() -> None:
    """Return the memory of dropped models (the GPU's too) before another engine loads its copy."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
