"""What a task kind is: one family of ``--tasks`` names, recognised, prepared and run by one object.

``evaluate`` knows no kind by name.  It parses the task names (each goes to
the first kind whose :meth:`TaskKind.parse` claims it), groups the requests
by kind, calls every kind's :meth:`~TaskKind.prepare` (data, prompts, options:
everything that can fail without the model), loads the model if any kind
:meth:`~TaskKind.needs_model`, calls every kind's :meth:`~TaskKind.run`, and
puts the rows, records and per-item samples together.

Adding a task kind
------------------

One new module and one registry entry:

1. In the module (in the layer that owns the kind's code), subclass
   :class:`TaskKind`: set ``name`` (the requests' and records' ``kind``) and
   ``order`` (kinds prepare and run by it: perplexity 10, summarization 20,
   lm-eval 90), write ``parse`` (return ``None`` for names that are not the
   kind's, usually those without its prefix), ``prepare`` and ``run``
   (returning a :class:`KindOutput`), and make one instance, ``KIND``.
   :mod:`calibench.evaluation.kinds.perplexity` is a short example.
2. Name it in :data:`calibench.evaluation.tasks.TASK_KINDS`:
   ``TASK_KINDS.register_lazy("mykind", "calibench.somewhere.mykind:KIND")``
   next to the other entries in :mod:`calibench.evaluation.tasks`.  The
   entry is a lazy string, so a kind of a higher layer (summarization) is
   never imported by evaluation; code that already imports evaluation (a
   plugin, a test) may instead call ``TASK_KINDS.register("mykind", KIND)``.

Nothing in ``evaluate`` changes: the new names parse, their data is checked
before the model loads, and their rows appear after those of the kinds with a
lower ``order``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from calibench.core import progress
from calibench.core.connectivity import Connectivity
from calibench.core.settings import DEFAULTS
from calibench.evaluation.perplexity import BosOption
from calibench.evaluation.results import EvalResult, EvalRow, TaskRecord
from calibench.evaluation.samples import ItemBlock
from calibench.evaluation.settings import BackendSettings
from calibench.evaluation.tasks import TaskRequest
from calibench.models import load_tokenizer

if TYPE_CHECKING:
    from calibench.evaluation.backends import Backend
    from calibench.evaluation.lmeval import LmEvalOptions


@dataclass
class EvalContext:
    """One ``evaluate`` call as every kind sees it: its options, the model, and what is loaded so far."""

    model: Any  # as given: a spec (bundled name, directory, hub id) or an in-memory causal LM
    name: str  # the model's display name
    max_len: int  # its context length
    conn: Connectivity  # online or offline, decided once for every kind
    options: LmEvalOptions  # evaluate's lm-eval options; ``options.log_samples`` holds for every kind
    backend: Backend  # what runs lm-eval's requests
    seq_len: int
    limit: int | None  # items per task
    max_windows: int | None  # perplexity windows per task (``limit`` unless given)
    batch_size: int = DEFAULTS.batch_size
    bos: BosOption = "auto"
    bootstrap_iters: int = 1000
    dtype: str = DEFAULTS.dtype
    device: str = DEFAULTS.device
    lm_eval_out: str | os.PathLike[str] | None = None
    tokenizer: Any = None  # the caller's, else loaded by a prepare (load_tokenizer) or with the model
    loaded_model: Any = None  # the torch model once loaded; None when no kind needs it (or lm-eval freed it)
    items: ItemBlock | None = None  # only these positions of every task (a block of adaptive evaluation)
    engine: BackendSettings = field(default_factory=BackendSettings)  # the backend's engine settings (vLLM's)

    @property
    def model_spec(self) -> Any:
        """The model as a spec, or None for an in-memory model."""
        return self.model if isinstance(self.model, (str, os.PathLike)) else None

    def load_tokenizer(self) -> Any:
        """The tokenizer, loaded from the spec now if nobody has (for checks before the model loads)."""
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.model)
        return self.tokenizer


@dataclass
class KindOutput:
    """What one kind's run gives: rows in order, a record per request name, per-item results by task."""

    rows: list[EvalRow] = field(default_factory=list)
    records: dict[str, TaskRecord] = field(default_factory=dict)
    samples: dict[str, list[Any]] = field(default_factory=dict)  # kept when log_samples is on
    # called with the assembled result: a kind adds its settings, versions or files (lm-eval's output layout)
    finish: Callable[[EvalResult], None] | None = None


class TaskKind:
    """One family of tasks.  Subclass it, override what differs, register an instance (see the module doc)."""

    name: str = ""  # the requests' and records' kind, and the name in TASK_KINDS
    order: int = 50  # kinds prepare and run in this order (lower first)
    fallback: bool = False  # asked last by parse_tasks: takes the names no other kind claims (lm-eval's)

    def parse(self, name: str, offline: bool | None) -> list[TaskRequest] | None:
        """The requests one ``--tasks`` entry stands for, or None when the name is not this kind's.

        A bad name of this kind is an error here (one line), before anything loads.
        """
        raise NotImplementedError

    def known_names(self) -> list[str]:
        """Names to list in help and did-you-mean hints."""
        return []

    def offline_names(self) -> list[str]:
        """Those of :meth:`known_names` that run without the hub."""
        return []

    def needs_hub(self, requests: list[TaskRequest]) -> bool:
        """Whether these requests may read the hub (then evaluate decides once if it is reachable)."""
        return False

    def prepare(self, requests: list[TaskRequest], ctx: EvalContext) -> Any:
        """Everything that can be done or refused before the model loads (data, prompts, options)."""
        return requests

    def needs_model(self, prepared: Any, ctx: EvalContext) -> bool:
        """Whether :meth:`run` needs the torch model in ``ctx.loaded_model``."""
        return True

    def run(self, prepared: Any, ctx: EvalContext) -> KindOutput:
        """Score the prepared tasks; a record for every request, skipped ones included."""
        raise NotImplementedError


def announce(message: str) -> None:
    """A progress line on stderr (what runs next), when progress is on."""
    if progress.enabled():
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
