"""The judges of the ``summ:`` task's faithfulness scores, checked by name in seconds and validated as their own step.

Two kinds, one registry entry each (:data:`JUDGES`); the name is also the ``summ:`` option that picks the model:

* ``nli``: the NLI model of SummaC-ZS (``summac_zs``): ``aegis`` (offline) or a hub id / directory;
* ``harim``: the causal LM that judges HaRiM+ (``harim_plus``), by default the dense model under test.

Each kind can :meth:`~JudgeKind.check` a model name without loading weights (a bundled name, a directory, or a
hub id whose config loads), give the :meth:`~JudgeKind.identity` its validation is cached under, and build a
scorer.  :func:`validate_judge` scores a judge on Factual-Summary-Pairs (minutes: ``calibench summ validate``)
and caches the result; an evaluation only reads it (:func:`lookup`), never computes it.  A new kind of judge is
one more :class:`JudgeKind` registered here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.core import progress
from calibench.core.errors import CalibenchError
from calibench.core.paths import assets_dir
from calibench.core.registry import Registry
from calibench.core.settings import DEFAULTS
from calibench.core.text import one_line
from calibench.models import load_model, load_tokenizer, resolve_model_path
from calibench.summarize import nli as nli_models  # called through the module: tests plug in a stub
from calibench.summarize.consistency import summac_zs
from calibench.summarize.data import factual_pairs
from calibench.summarize.harim import Judge, harim_scores
from calibench.summarize.metrics import CONSISTENCY_METRIC
from calibench.summarize.pairsets import PAIRSETS, ROWS
from calibench.summarize.prompts import STYLES, ChatMode, use_chat
from calibench.summarize.validate import ScoreFn, cached_results, cached_validation, pair_accuracy, store_validation

ALL = "all"
FSP_PAIRS = 371  # pairs in the pack's Factual-Summary-Pairs (for the time estimate before it is read)
#: what ``summ validate`` scores by default, in Factual-Summary-Pairs pairs (two rows each): FSP and every
#: constructed set of :data:`~calibench.summarize.pairsets.ROWS` rows (long sources cost more a row: a floor)
VALIDATION_PAIRS = FSP_PAIRS + (len(PAIRSETS) - 1) * ROWS // 2


@dataclass(frozen=True)
class Plan:
    """One judge of one ``summ:`` task, checked before the model under test loads."""

    kind: str  # "nli" or "harim"
    model: str  # the judge model as the task names it (a spec: bundled name, directory, hub id)
    identity: dict[str, Any]  # what its validation is cached under
    chat: bool  # harim: prompts through the judge's chat template
    validation: dict[str, Any] | None  # the cached result, None when not validated on this machine
    command: str  # the command that validates it


class JudgeKind:
    """One kind of judge: how to check a model name, what identifies a validation, how to score."""

    name = ""
    metric = ""
    default_model = ""
    seconds_per_pair = 1.0  # with the default model, for the "~N min" estimate until a run here measures it

    def check(self, model: str, offline: bool) -> str:
        """The judge model's canonical name, or one CalibenchError; never loads weights."""
        raise NotImplementedError

    def identity(self, model: str, style: str, chat: bool) -> dict[str, Any]:
        raise NotImplementedError

    def default_chat(self, model: str) -> bool:
        """What ``chat=auto`` means for this judge (the validate command's default)."""
        return False

    def scorer(self, model: str, style: str, chat: bool, *, batch_size: int, dtype: str, device: str,
               loaded: tuple[Any, Any] | None = None) -> ScoreFn:  # fmt: skip
        raise NotImplementedError

    def minutes(self, pairs: int = VALIDATION_PAIRS) -> int:
        """How long a full validation (every labelled set, as ``summ validate`` runs by default) takes: from the
        latest run of this kind here (a ``--limit`` run counts), else from :attr:`seconds_per_pair`."""
        runs = [r for r in cached_results() if r.get("scorer", {}).get("scorer") == self.metric and r.get("seconds")]
        rate = runs[-1]["seconds"] / runs[-1]["pairs"] if runs else self.seconds_per_pair
        return max(1, math.ceil(pairs * rate / 60))


class NliJudge(JudgeKind):
    name = "nli"
    metric = CONSISTENCY_METRIC
    default_model = nli_models.AEGIS
    seconds_per_pair = 1.8  # aegis: 58 s for 32 pairs on 2 CPU cores shared with five other jobs

    def check(self, model: str, offline: bool) -> str:
        nli_models.check_nli_name(model, offline)
        return model

    def identity(self, model: str, style: str, chat: bool) -> dict[str, Any]:
        # the NLI scores premise/hypothesis pairs (no prompt); premises are windows of source sentences
        return {"scorer": self.metric, "nli": model, "premises": "windows"}

    def scorer(self, model: str, style: str, chat: bool, *, batch_size: int, dtype: str, device: str,
               loaded: tuple[Any, Any] | None = None) -> ScoreFn:  # fmt: skip
        nli = nli_models.get_nli(model)
        return lambda sources, summaries: summac_zs(nli, sources, summaries)


class HarimJudge(JudgeKind):
    name = "harim"
    metric = "harim_plus"
    default_model = "smollm2-135m"
    seconds_per_pair = 12.6  # smollm2-135m: 404 s for 32 pairs on 2 CPU cores shared with five other jobs

    def check(self, model: str, offline: bool) -> str:
        path = resolve_model_path(model)  # an unknown name, a missing directory or an unpulled asset: one line
        if not Path(path).is_dir():  # a hub id: its config, no weights
            from transformers import AutoConfig

            try:
                AutoConfig.from_pretrained(path, local_files_only=offline)
            except Exception as exc:
                where = "in the local hub cache (offline)" if offline else "locally or on the hub"
                raise CalibenchError(
                    f"HaRiM+ judge '{model}' not found {where} ({one_line(str(exc), 120)}); "
                    "use harim=auto (the dense model), a bundled model, a directory, or harim=none"
                ) from None
        else:
            check_causal_lm(model, Path(path))
        return canonical_model(path)

    def identity(self, model: str, style: str, chat: bool) -> dict[str, Any]:
        return {"scorer": self.metric, "judge": canonical_model(resolve_model_path(model)), "style": style,
                "chat": chat}  # fmt: skip

    def default_chat(self, model: str) -> bool:
        return use_chat(load_tokenizer(model), "auto", model)

    def scorer(self, model: str, style: str, chat: bool, *, batch_size: int, dtype: str, device: str,
               loaded: tuple[Any, Any] | None = None) -> ScoreFn:  # fmt: skip
        if loaded is None:
            with progress.task(f"loading HaRiM+ judge {model}", total=None):
                loaded = (load_model(model, dtype=dtype, device=device), load_tokenizer(model))
        judge = Judge(loaded[0], loaded[1], style, chat, model, batch_size)
        return lambda sources, summaries: [h["harim_plus"] for h in harim_scores(judge, sources, summaries)]


JUDGES: Registry[JudgeKind] = Registry("judge")
JUDGES.register("nli", NliJudge())
JUDGES.register("harim", HarimJudge())


def check_causal_lm(model: str, path: Path) -> None:
    """A local model directory that is not a causal LM (a sentence encoder, a classifier) refused from its
    config.json alone: HaRiM+ needs next-token probabilities."""
    import json

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # loading reports what is wrong with it
    archs = [str(a) for a in config.get("architectures") or []]
    if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs):
        raise CalibenchError(
            f"HaRiM+ judge '{model}' is not a causal language model (architecture {', '.join(archs)}): give a causal "
            "LM such as smollm2-135m or gemma3-270m"
        )


def canonical_model(path: str) -> str:
    """A bundled model by its name (the same wherever ``$CALIBENCH_HOME`` is), anything else by its path or id."""
    p = Path(path)
    if p.is_dir() and p.parent.resolve() == assets_dir().resolve():
        return p.name
    return path


def validate_command(kind: str, model: str, style: str = "sentences", chat: bool | None = None) -> str:
    """The ``calibench summ validate`` line that validates this judge identity."""
    judge = JUDGES.get(kind)
    words = ["calibench summ validate", f"--judge {kind}"]
    if canonical_model_safe(kind, model) != canonical_model_safe(kind, judge.default_model):
        words.append(f"--judge-model {model}")
    if kind == "harim":
        if style != "sentences":
            words.append(f"--style {style}")
        if chat is not None and chat != judge.default_chat(model):
            words.append(f"--chat {'yes' if chat else 'no'}")
    return " ".join(words)


def canonical_model_safe(kind: str, model: str) -> str:
    if kind != "harim":
        return model
    try:
        return canonical_model(resolve_model_path(model))
    except CalibenchError:
        return model


def lookup(kind: str, model: str, style: str, chat: bool, *, validate: bool = True) -> Plan:
    """A judge's cached validation (or None) and the command that makes it: what an evaluation reports."""
    judge = JUDGES.get(kind)
    identity = judge.identity(model, style, chat)
    found = cached_validation(identity) if validate else None
    return Plan(kind, model, identity, chat, found, validate_command(kind, model, style, chat))


def not_validated_line(plans: list[Plan]) -> str:
    """The one warning line for the judges an evaluation marks not validated (all of them in one line)."""
    shown = [f"{p.kind} ({canonical_model_safe(p.kind, p.model)})" for p in plans]
    commands = [p.command for p in plans]
    defaults = {validate_command(k, JUDGES.get(k).default_model) for k in JUDGES.names()}
    if len(plans) > 1 and set(commands) == defaults:  # every judge with its default model: one command does all
        commands = [f"calibench summ validate --judge {ALL}"]
    minutes = sum(JUDGES.get(p.kind).minutes() for p in plans)
    subject = f"judge {shown[0]} is" if len(shown) == 1 else f"judges {' and '.join(shown)} are"
    run = " and ".join(f"'{c}'" for c in commands)
    return f"{subject} not validated on this machine; run {run} (~{minutes} min)"


def judge_names(judge: str) -> list[str]:
    """``all`` or one registered kind, as a list of kinds (an unknown name: one line with the known ones)."""
    if judge == ALL:
        return JUDGES.names()
    JUDGES.get(judge)
    return [judge]


def validate_judge(
    judge: str = "harim",
    model: str | None = None,
    *,
    style: str = "sentences",
    chat: ChatMode = "auto",
    limit: int | None = None,
    force: bool = False,
    offline: bool = False,
    batch_size: int = DEFAULTS.batch_size,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
) -> dict[str, Any]:
    """Score one judge on Factual-Summary-Pairs (all 371, or the first ``limit``) and cache the result.

    A result cached already is returned as it is (``cached: True``) unless ``force``.  The judge model is
    checked by name before anything loads.  The result holds ``accuracy``, ``pairs``, ``ties``, the judge
    identity (``scorer``), ``path`` (the cache file) and ``seconds`` (0 when cached).
    """
    kind = JUDGES.get(judge)
    if style not in STYLES:
        raise CalibenchError(f"style must be one of {', '.join(STYLES)}, got '{style}'")
    if limit is not None and limit < 1:
        raise CalibenchError(f"limit must be at least 1, got {limit}")
    name = model or kind.default_model
    kind.check(name, offline)
    chat_on = use_chat(load_tokenizer(name), chat, name) if judge == "harim" else False
    identity = kind.identity(name, style, chat_on)
    if not force:
        found = cached_validation(identity, limit)
        if found is not None:
            return {**found, "cached": True, "seconds": 0.0}
    pairs = factual_pairs(limit)
    started = time.perf_counter()
    score = kind.scorer(name, style, chat_on, batch_size=batch_size, dtype=dtype, device=device)
    label = f"validating {judge} ({canonical_model_safe(judge, name)})"
    with progress.task(label, total=len(pairs), unit="pairs") as bar:
        result = pair_accuracy(score, pairs, bar.advance)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return {**store_validation(identity, result, limit), "cached": False}


def plan_judges(
    nli: str, harim: str | None, style: str, model_chat: bool, *, offline: bool, validate: bool = True
) -> list[Plan]:
    """The judges of one task, checked by name (seconds, no weights) and looked up in the validation cache.

    ``harim`` is the judge spec already resolved from ``auto`` (None: no HaRiM+).
    """
    plans = []
    if nli != "none":
        JUDGES.get("nli").check(nli, offline)
        plans.append(lookup("nli", nli, style, False, validate=validate))
    if harim is not None:
        JUDGES.get("harim").check(harim, offline)
        chat = use_chat(load_tokenizer(harim), "auto", harim) and model_chat
        plans.append(lookup("harim", harim, style, chat, validate=validate))
    return plans


def check_names(nli: str, harim: str, offline: bool | None) -> None:
    """The judges' model names checked as a ``summ:`` task is parsed: a typo is refused in a second, before
    torch or transformers are imported.  ``offline`` (or ``HF_HUB_OFFLINE``): a hub id must be in the local
    hub cache.  What needs a library (the asset pulled, the config's labels) is checked as the task prepares."""
    from calibench.core.connectivity import env_offline
    from calibench.models import bundled_models

    hub_offline = offline is True or (offline is None and env_offline() is not None)
    if nli not in ("none", nli_models.AEGIS):
        nli_models.check_nli_spelling(nli, hub_offline)
    if harim not in ("auto", "none") and harim not in bundled_models():
        try:
            path = resolve_model_path(harim)
        except CalibenchError as exc:  # an unknown name or a missing directory
            raise CalibenchError(f"HaRiM+ judge harim={harim}: {exc}") from None
        if not Path(path).is_dir() and hub_offline and not in_hub_cache(path):
            raise CalibenchError(
                f"HaRiM+ judge '{harim}' is not in the local hub cache (offline): use harim=auto (the dense model), "
                f"a bundled model, a directory, or harim=none"
            )


def in_hub_cache(repo_id: str) -> bool:
    """Whether a hub model's config.json is in the local hub cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub client rejects
        return False
