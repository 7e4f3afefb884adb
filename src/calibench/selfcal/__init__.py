"""Self-calibration: the model generates its own calibration data.

* :mod:`~calibench.selfcal.schedule`: the linear temperature schedule (pure math);
* :mod:`~calibench.selfcal.stopwords`: the first-token stop-word restriction;
* :mod:`~calibench.selfcal.tokens`: which token generation starts from, which tokens end it;
* :mod:`~calibench.selfcal.sampler`: the batched KV-cache sampling loop, one for every strategy;
* :mod:`~calibench.selfcal.pipeline`: the one pipeline from settings to a recorded CalibrationSet, and the
  registry of strategies (``prompting``): how each turn opens;
* :mod:`~calibench.selfcal.api`: the ``bos`` strategy (the paper's setting) and :func:`generate_calibration_set`;
* :mod:`~calibench.selfcal.prompted`: the ``chat`` strategy and :func:`generate_prompted_set`;
* :mod:`~calibench.selfcal.vllm_backend`: the same plan run by vLLM, when installed and requested.

External synthetic corpora (the paper's other baseline, e.g. Cosmopedia) need
nothing from this package: they are ordinary text sources.  Download a shard
(a ``.parquet`` or ``.jsonl`` file) and build from it like any local corpus,
``calibench data build cosmopedia-shard.parquet --text-field text -m MODEL
--out DIR``, then compare it with a generated set by ``calibench data stats``.
"""

from calibench.selfcal.api import GenerationSettings, generate_calibration_set, run_generation
from calibench.selfcal.pipeline import STRATEGIES
from calibench.selfcal.sampler import GenerationStats, SamplingPlan, process_logits, sample_streams, sample_turns
from calibench.selfcal.schedule import check_schedule, temperature_at, temperatures
from calibench.selfcal.stopwords import load_stopwords, stopword_token_ids
from calibench.selfcal.tokens import StartToken, resolve_start_token, stop_token_ids

__all__ = [
    "GenerationSettings",
    "GenerationStats",
    "STRATEGIES",
    "SamplingPlan",
    "StartToken",
    "check_schedule",
    "generate_calibration_set",
    "load_stopwords",
    "process_logits",
    "resolve_start_token",
    "run_generation",
    "sample_streams",
    "sample_turns",
    "stop_token_ids",
    "stopword_token_ids",
    "temperature_at",
    "temperatures",
]
