"""The ``summ:`` task: prompt, generate greedily, score every summary, give rows and per-document items.

``summ:DATASET[:key=value...]``, for instance ``summ:xsum``,
``summ:xsum:style=paragraph:max_new_tokens=96``, ``summ:my_docs.jsonl:chat=no``.
Options (defaults in brackets):

* ``style`` [sentences]: paragraph, sentences or summary (:data:`.prompts.STYLES`);
* ``max_new_tokens`` [64]: the generation cap;
* ``chat`` [auto]: the chat template when the tokenizer has one; ``yes`` requires it, ``no`` gives a plain prompt;
* ``system`` [yes]: the system line asking for truthful summaries (chat only);
* ``nli`` [aegis]: the NLI model of the SummaC-ZS score: aegis (offline), none, or a hub id / directory;
* ``harim`` [auto]: the judge of HaRiM+: ``auto`` is the dense model (the checkpoint's source model for a
  calibench checkpoint, the model itself otherwise), ``none`` skips it, or any model spec;
* ``validate`` [yes]: report each judge's accuracy on Factual-Summary-Pairs as a row, from the result
  ``calibench summ validate`` cached (:mod:`.judges`); a judge not validated on this machine is marked so
  (``validated: false`` in its details, no ``.fsp_acc`` row) with one warning line naming the command.
  An evaluation never validates: that takes minutes.  Each consistency metric's judge is recorded in the task's
  details under ``judge_validity`` (:mod:`.claims`: its identity, the validate command, and the validated AUC
  per dataset it was read under, or none) and shown as a note beside the rows.  ``no`` does not look;
* ``max_prompt_tokens``: skip documents whose prompt is longer (default: the context minus max_new_tokens).

The judges' model names (``nli``, ``harim``) are checked before the model under test loads, without
loading weights.  Documents whose prompt does not fit are skipped and counted (``skipped_too_long``).
Rows: one per metric, the mean over documents, stderr from a bootstrap of the mean,
the 95% interval in the task record.  Items: one per document with ``doc_id``,
``doc_hash`` (what pairs runs), the summary (``response``) and every metric.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from calibench.core import progress
from calibench.core.errors import CalibenchError
from calibench.data.chat import require_chat_template
from calibench.evaluation.kinds.base import EvalContext, KindOutput, TaskKind, announce
from calibench.evaluation.results import EvalRow, TaskRecord
from calibench.evaluation.tasks import SUMM_KIND, TaskRequest
from calibench.models import load_model, load_tokenizer, model_max_length, resolve_model_path
from calibench.selfcal.prompted import chat_stop_ids
from calibench.selfcal.tokens import _ids
from calibench.summarize import nli as nli_models  # called through the module: tests plug in a stub
from calibench.summarize.claims import DETAILS_KEY, JudgeRecord
from calibench.summarize.consistency import summac_zs
from calibench.summarize.data import SummDataset, SummDoc, resolve_dataset
from calibench.summarize.generate import greedy_generate
from calibench.summarize.harim import Judge, harim_scores
from calibench.summarize.judges import Plan, check_names, lookup, not_validated_line, plan_judges
from calibench.summarize.metrics import ALL_METRICS, CONSISTENCY_METRIC, lexical_metrics
from calibench.summarize.prompts import ChatMode, check_style, clean_summary, render, use_chat
from calibench.summarize.stats import bootstrap_mean

SUMM_PREFIX = "summ:"
SUMM_DATASETS = ("xsum", "multilexsum", "mtsdialog", "xsum-hub", "cnn_dailymail")  # see calibench.summarize.data
SUMM_OFFLINE = ("xsum", "multilexsum", "mtsdialog")


class SummOptions(BaseModel):
    """The options of a ``summ:`` task, validated (a bad value is one line naming the option)."""

    model_config = ConfigDict(extra="forbid")
    style: str = "sentences"
    max_new_tokens: int = Field(64)
    chat: ChatMode = "auto"
    system: bool = True
    nli: str = "aegis"
    harim: str = "auto"
    validate_scorers: bool = Field(True, alias="validate")
    max_prompt_tokens: int | None = None

    @field_validator("style")
    @classmethod
    def _style(cls, v: str) -> str:
        return check_style(v)

    @field_validator("chat", mode="before")  # before the Literal check, so that the message is this one
    @classmethod
    def _chat(cls, v: Any) -> Any:
        if v not in ("auto", "yes", "no"):
            raise ValueError("must be auto, yes or no")
        return v

    @field_validator("max_new_tokens", "max_prompt_tokens")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"must be at least 1, got {v}")
        return v


_DEFAULTS = SummOptions().model_dump(by_alias=True)


@dataclass(frozen=True)
class SummTask:
    name: str  # canonical row label
    dataset: SummDataset
    options: SummOptions


def parse_summ_task(name: str) -> SummTask:
    """``summ:DATASET[:key=value...]`` to a task, or one line saying what is wrong."""
    body = name[len(SUMM_PREFIX) :]
    parts = body.split(":")
    dataset_name, raw = parts[0], parts[1:]
    if not dataset_name:
        raise CalibenchError(f"task '{name}' names no dataset: use summ:xsum (or multilexsum, mtsdialog, a .jsonl)")
    values: dict[str, Any] = {}
    for piece in raw:
        key, eq, value = piece.partition("=")
        if not eq or not key:
            raise CalibenchError(f"task '{name}': option '{piece}' is not key=value (e.g. summ:xsum:max_new_tokens=64)")
        values[key] = {"yes": True, "no": False}.get(value, value) if key in ("system", "validate") else value
    try:
        options = SummOptions.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "options"
        known = ", ".join(SummOptions.model_fields[k].alias or k for k in SummOptions.model_fields)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"is not an option (options: {known})"
        raise CalibenchError(f"task '{name}': {where} {msg}") from None
    dataset = resolve_dataset(dataset_name)
    dumped = options.model_dump(by_alias=True)
    extra = [f"{k}={_show(v)}" for k, v in dumped.items() if v != _DEFAULTS[k]]
    return SummTask(":".join([SUMM_PREFIX + dataset_name, *extra]), dataset, options)


def _show(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, str(value)) if isinstance(value, bool) else str(value)


# ----------------------------------------------------------------------------- running


@dataclass
class Prepared:
    """A task with its documents loaded (before any model): what evaluate checks first."""

    task: SummTask
    docs: list[SummDoc]
    n_total: int
    limit: int | None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    judges: list[Plan] = field(default_factory=list)  # checked by name, with their cached validation

    def judge(self, kind: str) -> Plan | None:
        return next((p for p in self.judges if p.kind == kind), None)


def prepare(
    task: SummTask,
    limit: int | None,
    *,
    model_spec: Any = None,
    model: Any = None,
    model_chat: bool = False,
    offline: bool = False,
) -> Prepared:
    """Load the documents and check the judges by name, so that nothing fails after the model loads.

    ``model_spec``/``model``: the model under test (a spec, or in memory), from which ``harim=auto`` finds
    its judge; ``model_chat``: whether its prompts use the chat template.
    """
    started = time.perf_counter()
    docs = task.dataset.load()
    opts = task.options
    judge_spec = _judge_spec(opts.harim, model_spec, model) if model_spec is not None or model is not None else None
    plans = plan_judges(opts.nli, judge_spec, opts.style, model_chat, offline=offline, validate=opts.validate_scorers)
    chosen = docs[:limit] if limit is not None else docs
    return Prepared(
        task,
        chosen,
        len(docs),
        limit if limit is not None and limit < len(docs) else None,
        time.perf_counter() - started,
        judges=plans,
    )


def check_model(task: SummTask, tokenizer: Any, model_name: str) -> bool:
    """Whether prompts use the chat template (``chat=yes`` on a base model fails here, before loading)."""
    return use_chat(tokenizer, task.options.chat, model_name)


def run(
    prep: Prepared, model: Any, tokenizer: Any, model_spec: Any, batch_size: int
) -> tuple[list[Any], Any, list[dict[str, Any]]]:
    """Generate and score: (rows, task record, items)."""
    started = time.perf_counter()
    task, opts = prep.task, prep.task.options
    name = str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
    chat = use_chat(tokenizer, opts.chat, name)
    context = model_max_length(model)
    cap = min(context - opts.max_new_tokens, opts.max_prompt_tokens or context)
    kept: list[tuple[SummDoc, list[int]]] = []
    skipped = 0
    for doc in prep.docs:
        ids = render(tokenizer, doc.document, opts.style, chat, opts.system)
        if len(ids) > cap:
            skipped += 1
        else:
            kept.append((doc, ids))
    if not kept:
        raise CalibenchError(
            f"{task.name}: none of the {len(prep.docs)} documents fits in {cap} prompt tokens "
            f"(context {context}, max_new_tokens {opts.max_new_tokens}); use a shorter dataset "
            "or raise max_prompt_tokens"
        )
    stops = _stop_ids(tokenizer, model, chat)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    with progress.task(f"{task.name}: generating", total=len(kept), unit="documents") as bar:
        gen = greedy_generate(
            model,
            [ids for _, ids in kept],
            max_new_tokens=opts.max_new_tokens,
            stop_ids=stops,
            pad_id=pad,
            batch_size=batch_size,
            vocab_size=len(tokenizer),
            on_done=bar.advance,
        )
    summaries = [clean_summary(tokenizer.decode(g.tokens, skip_special_tokens=True), chat) for g in gen.generations]
    docs = [d for d, _ in kept]
    per_doc = [lexical_metrics(s, d.document, d.reference) for s, d in zip(summaries, docs)]
    details: dict[str, Any] = {}
    rows_extra: list[Any] = []
    judged: dict[str, JudgeRecord] = {}  # consistency metric -> its judge and the validity it was read under
    if opts.nli != "none":
        nli = nli_models.get_nli(opts.nli)
        with progress.task(f"{task.name}: consistency ({opts.nli})", total=None):
            scores = summac_zs(nli, [d.document for d in docs], summaries)
        for m, v in zip(per_doc, scores):
            m[CONSISTENCY_METRIC] = v
        details["consistency"] = {
            "method": "SummaC-ZS, sentence granularity, max over source sentences, mean over "
            "summary sentences, P(supported)",
            "nli": opts.nli,
            **_validation(prep.judge("nli"), opts.validate_scorers, task.name, CONSISTENCY_METRIC, rows_extra),
        }
        nli_plan = prep.judge("nli") or lookup("nli", opts.nli, opts.style, False, validate=False)
        judged[CONSISTENCY_METRIC] = JudgeRecord.from_plan(CONSISTENCY_METRIC, nli_plan, opts.validate_scorers)
    plan = prep.judge("harim")
    judge_spec = plan.model if plan is not None else _judge_spec(opts.harim, model_spec, model)
    if judge_spec is not None:
        judge_model, judge_tok = _load_judge(judge_spec, model, tokenizer, model_spec)
        judge = Judge(
            judge_model,
            judge_tok,
            opts.style,
            plan.chat if plan is not None else use_chat(judge_tok, "auto", judge_spec) and chat,
            str(judge_spec),
            batch_size,
        )
        with progress.task(f"{task.name}: HaRiM+ (judge {judge_spec})", total=None):
            scores_h = harim_scores(judge, [d.document for d in docs], summaries)
        for m, h in zip(per_doc, scores_h):
            m.update(h)
        details["harim"] = {
            "judge": str(judge_spec),
            "lambda": 7.0,
            "chat": judge.chat,
            **_validation(plan, opts.validate_scorers, task.name, "harim_plus", rows_extra),
        }
        harim_plan = plan or lookup("harim", str(judge_spec), opts.style, judge.chat, validate=False)
        judged["harim_plus"] = JudgeRecord.from_plan("harim_plus", harim_plan, opts.validate_scorers)
    rows, ci = [], {}
    for metric in ALL_METRICS:
        values = [m[metric] for m in per_doc if metric in m]
        if not values:
            continue
        interval = bootstrap_mean(values)
        ci[metric] = interval.as_dict()
        if interval.n:
            rows.append(
                EvalRow(
                    task=task.name,
                    metric=metric,
                    value=interval.mean,
                    stderr=interval.stderr,
                    n=interval.n,
                    limit=prep.limit,
                )
            )
    rows.extend(rows_extra)
    items = []
    for (doc, ids), g, s, m in zip(kept, gen.generations, summaries, per_doc):
        items.append(
            {
                "doc_id": doc.doc_id,
                "doc_hash": doc.doc_hash,
                "prompt_hash": hashlib.sha256(str(ids).encode()).hexdigest(),
                "target": doc.reference,
                "response": s,
                "prompt_tokens": len(ids),
                "new_tokens": len(g.tokens),
                "stopped": g.stopped,
                "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()},
            }
        )
    record = TaskRecord(
        task=task.name,
        kind=SUMM_KIND,
        mode="offline" if task.dataset.offline else "online",
        data=task.dataset.origin,
        split="test",
        n_total=prep.n_total,
        n_evaluated=len(kept),
        limit=prep.limit,
    )
    record.details.update(
        {
            "options": opts.model_dump(by_alias=True),
            "chat_template": chat,
            "stop_ids": stops,
            "skipped_too_long": skipped,
            "prompt_token_cap": cap,
            "ci95": ci,
            "generation": {
                "decoding": "greedy",
                "batch_size": batch_size,
                "new_tokens": gen.new_tokens,
                "seconds": round(gen.seconds, 3),
                "tokens_per_second": round(gen.tokens_per_second, 2),
                "stopped": sum(g.stopped for g in gen.generations),
                "cut_at_max_new_tokens": sum(not g.stopped for g in gen.generations),
            },
            **details,
        }
    )
    if judged:
        record.details[DETAILS_KEY] = {m: r.to_json() for m, r in judged.items()}
    for metric, judge_record in judged.items():
        record.notes.append(f"{metric} (judge {judge_record.kind} {judge_record.shown_model}): {judge_record.text()}")
    if skipped:
        record.notes.append(f"{skipped} document(s) skipped: prompt longer than {cap} tokens")
    record.seconds = prep.seconds + time.perf_counter() - started
    return rows, record, items


def _stop_ids(tokenizer: Any, model: Any, chat: bool) -> list[int]:
    if chat:
        return chat_stop_ids(tokenizer, require_chat_template(tokenizer), model)[0]
    ids = set(_ids(tokenizer.eos_token_id)) | set(_ids(getattr(model.generation_config, "eos_token_id", None)))
    ids |= set(_ids(getattr(model.config, "eos_token_id", None)))
    return sorted(i for i in ids if i is not None and i >= 0) or [-1]


def _judge_spec(option: str, model_spec: Any, model: Any) -> str | None:
    """Which model judges HaRiM+: ``auto`` is the dense model the evaluated one was made from."""
    if option == "none":
        return None
    if option != "auto":
        return option
    if model_spec is not None:
        from calibench.compress import RECORD_FILE

        path = resolve_model_path(model_spec)
        record = os.path.join(path, RECORD_FILE)
        if os.path.isfile(record):  # a calibench checkpoint: its source model is the dense one
            with open(record, encoding="utf-8") as fh:
                return str(json.load(fh).get("model") or model_spec)
        return os.fspath(model_spec)
    source = getattr(model.config, "_name_or_path", "")
    if source and os.path.isdir(source):  # an in-memory model loaded (then compressed) from this directory
        return source
    raise CalibenchError(
        "summarization harim=auto cannot tell which dense model this in-memory model came from: "
        "pass harim=MODEL (e.g. summ:xsum:harim=smollm2-135m) or harim=none"
    )


def _validation(plan: Plan | None, wanted: bool, task: str, metric: str, rows: list[Any]) -> dict[str, Any]:
    """A judge's validation as its details show it; its accuracy row when it is validated.

    ``validated``: true (``factual_summary_pairs`` holds the cached result), false (not validated on this
    machine: ``validate_with`` is the command), or null (``validate=no``: not looked up).
    """
    if not wanted or plan is None:
        return {"validated": None, "factual_summary_pairs": None}
    if plan.validation is None:
        return {"validated": False, "factual_summary_pairs": None, "validate_with": plan.command}
    val = {k: v for k, v in plan.validation.items() if k != "path"}
    rows.append(EvalRow(task=task, metric=f"{metric}.fsp_acc", value=val["accuracy"], n=val["pairs"]))
    return {"validated": True, "factual_summary_pairs": val}


_WARNED: set[str] = set()


def warn_not_validated(prep: Prepared) -> None:
    """One ``warning:`` line on stderr for the judges not validated on this machine (each once per process)."""
    if not prep.task.options.validate_scorers:
        return
    missing = [p for p in prep.judges if p.validation is None and _key(p) not in _WARNED]
    if missing:
        _WARNED.update(_key(p) for p in missing)
        sys.stderr.write(f"warning: {not_validated_line(missing)}\n")
        sys.stderr.flush()


def _key(plan: Plan) -> str:
    return json.dumps(plan.identity, sort_keys=True)


_JUDGES: dict[str, tuple[Any, Any]] = {}


def _load_judge(spec: str, model: Any, tokenizer: Any, model_spec: Any) -> tuple[Any, Any]:
    """The judge, loaded once per process; the evaluated model itself when it *is* the dense model."""
    path = resolve_model_path(spec)
    if model_spec is not None and resolve_model_path(model_spec) == path:
        return model, tokenizer
    if path not in _JUDGES:
        device = next(model.parameters()).device
        _JUDGES.clear()  # one judge at a time: a study over several models must not keep them all
        with progress.task(f"loading HaRiM+ judge {spec}", total=None):
            _JUDGES[path] = (load_model(spec, device=str(device)), load_tokenizer(spec))
    return _JUDGES[path]


class SummarizationKind(TaskKind):
    """The ``summ:`` task kind, named lazily in :data:`calibench.evaluation.tasks.TASK_KINDS`."""

    name = SUMM_KIND
    order = 20

    def parse(self, name: str, offline: bool | None) -> list[TaskRequest] | None:
        if not name.startswith(SUMM_PREFIX):
            return None
        task = parse_summ_task(name)
        check_names(task.options.nli, task.options.harim, offline)  # a judge's typo: refused in a second
        return [TaskRequest(task.name, SUMM_KIND, task)]

    def known_names(self) -> list[str]:
        return [SUMM_PREFIX + n for n in SUMM_DATASETS]

    def offline_names(self) -> list[str]:
        return [SUMM_PREFIX + n for n in SUMM_OFFLINE]

    def prepare(self, requests: list[TaskRequest], ctx: EvalContext) -> list[Prepared]:
        """Every dataset loaded and the prompts checked renderable, before the model loads."""
        tokenizer = ctx.load_tokenizer()
        chats = [check_model(r.spec, tokenizer, ctx.name) for r in requests]  # chat=yes without a template fails
        model = None if ctx.model_spec is not None else ctx.model
        return [
            prepare(r.spec, ctx.limit, model_spec=ctx.model_spec, model=model, model_chat=c, offline=ctx.conn.offline)
            for r, c in zip(requests, chats)
        ]

    def run(self, prepared: list[Prepared], ctx: EvalContext) -> KindOutput:
        out = KindOutput()
        for prep in prepared:
            announce(f"{prep.task.name}: summarization, {len(prep.docs)} of {prep.n_total} documents")
            warn_not_validated(prep)
            rows, record, items = run(prep, ctx.loaded_model, ctx.tokenizer, ctx.model_spec, ctx.batch_size)
            out.records[prep.task.name] = record
            out.rows.extend(rows)
            out.samples[prep.task.name] = items
        return out


KIND = SummarizationKind()
