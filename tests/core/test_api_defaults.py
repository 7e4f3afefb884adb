"""The Python API takes the shared settings' defaults, as the CLI does; exceptions are listed with a reason."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

from calibench.core.errors import CalibenchError, ParameterError
from calibench.core.settings import API_DEFAULTS, DEFAULTS, CommonSettings, accepts_settings

# The public functions that take shared concepts (dtype, device, batch size, seed, offline, max windows, ...).
PUBLIC_API = [
    "calibench.evaluation.api:evaluate",
    "calibench.evaluation.perplexity:perplexity",
    "calibench.evaluation.perplexity:score_windows",
    "calibench.evaluation.perplexity:cut_windows",
    "calibench.evaluation.tasks:parse_tasks",
    "calibench.models:load_model",
    "calibench.models:resolve_device",
    "calibench.placement:load_placed",
    "calibench.data.builders:build_sets",
    "calibench.data.draw:build_calibration_sets",
    "calibench.data.draw:build_calibration_set",
    "calibench.data.stats:set_statistics",
    "calibench.data.stats.perplexity:set_nll",
    "calibench.data.stats.perplexity:set_perplexity",
    "calibench.compress.api:compress",
    "calibench.curate.pipeline:curate",
    "calibench.curate.pipeline:curate_seeds",
    "calibench.curate.pipeline:pool_features",
    "calibench.curate.pool:build_pool",
    "calibench.curate.selection:kmeans_select",
    "calibench.curate.selection:random_select",
    "calibench.curate.setstats:pool_statistics",
    "calibench.curate.proxy:proxy_evaluate",
    "calibench.curate.proxy:reference_perplexity",
    "calibench.selfcal.api:run_generation",
    "calibench.selfcal.pipeline:generate",
    "calibench.selfcal.prompted:generate_prompted_set",
    "calibench.selfcal.prompted:sample_prompted_streams",
    "calibench.selfcal.sampler:sample_streams",
    "calibench.selfcal.sampler:sample_turns",
    "calibench.card.datasheet:gather",
    "calibench.card.export_hf:push_to_hub",
    "calibench.inspect.run:inspect_model",
    "calibench.inspect.collect:activation_stats",
    "calibench.inspect.quant_error:activation_quant_error",
    "calibench.inspect.stream:stream_activations",
    "calibench.summarize.generate:greedy_generate",
    "calibench.vocab.collect:collect",
    "calibench.vocab.lmeval_tokens:task_token_ids",
    "calibench.vocab.checkpoint:load",
    "calibench.predict.recommend:recommend",
    "calibench.predict.study_signals:compute_study_signals",
    "calibench.predict.reconstruction:reconstruction",
    "calibench.predict.signals:make_probe",
]

SHARED = set(CommonSettings.model_fields)


def _function(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _key(fn: Any, param: str) -> str:
    return f"{fn.__module__}.{fn.__qualname__}:{param}"


def test_public_api_defaults_are_common_settings_or_listed():
    wrong = []
    for target in PUBLIC_API:
        fn = _function(target)
        for name, param in inspect.signature(fn).parameters.items():
            if name not in SHARED or param.default is inspect.Parameter.empty:
                continue
            key = _key(fn, name)
            expected = API_DEFAULTS[key][0] if key in API_DEFAULTS else getattr(DEFAULTS, name)
            if param.default != expected or type(param.default) is not type(expected):
                wrong.append(f"{key} = {param.default!r}, expected {expected!r}")
    assert not wrong, "defaults differ from CommonSettings and are not in API_DEFAULTS:\n" + "\n".join(wrong)


def test_every_listed_exception_is_real_and_explained():
    listed = {_key(_function(t), "")[:-1] for t in PUBLIC_API}
    for key, (default, reason) in API_DEFAULTS.items():
        path, param = key.split(":")
        assert param in SHARED, key
        assert path + ":" in {k + ":" for k in listed}, f"{key}: not a function in PUBLIC_API"
        module, _, name = path.rpartition(".")
        fn = getattr(importlib.import_module(module), name)
        assert inspect.signature(fn).parameters[param].default == default, key
        assert default != getattr(DEFAULTS, param), f"{key}: the same as CommonSettings' default, not an exception"
        assert len(reason) > 20, key


def test_inspect_api_and_command_share_their_batch_default():
    from calibench.cli.options import COMMAND_DEFAULTS

    command = COMMAND_DEFAULTS[("inspect activations", "batch_size")][0]
    assert API_DEFAULTS["calibench.inspect.run.inspect_model:batch_size"][0] == command


def test_settings_models_declare_the_functions_defaults():
    from calibench.evaluation import evaluate
    from calibench.evaluation.settings import SEQ_LEN_FIELD, EvalSettings
    from calibench.predict.recommend import recommend
    from calibench.predict.settings import RecommendSettings

    params = inspect.signature(evaluate).parameters
    for field, info in EvalSettings.model_fields.items():
        assert params[SEQ_LEN_FIELD.get(field, field)].default == info.default, field
    params = inspect.signature(recommend).parameters
    for field, info in RecommendSettings.model_fields.items():
        if info.is_required():
            continue
        default = params[field].default
        default = ",".join(default) if field == "tasks" else default
        assert default == info.default, field
    from calibench.predict.settings import StudySignalsSettings
    from calibench.predict.study_signals import compute_study_signals
    from calibench.vocab.checkpoint import restore
    from calibench.vocab.settings import VocabRestoreSettings

    for model, fn in ((StudySignalsSettings, compute_study_signals), (VocabRestoreSettings, restore)):
        params = inspect.signature(fn).parameters
        for field, info in model.model_fields.items():
            assert params[field].default == info.default, (fn.__name__, field)


# --- settings= next to keywords -------------------------------------------------------------------------------


def test_accepts_settings_fills_overrides_and_refuses():
    from pydantic import BaseModel

    class Opts(BaseModel):
        a: int = 1
        b_len: int = 2

    @accepts_settings(Opts, renames={"b_len": "b"})
    def fn(x: int, a: int = 10, *, b: int = 20, c: int = 30, settings: Opts | None = None) -> tuple[int, ...]:
        assert settings is None  # applied by the decorator
        return x, a, b, c

    assert fn(0) == (0, 10, 20, 30)  # without settings: exactly as before
    assert fn(0, settings=Opts(a=5, b_len=6)) == (0, 5, 6, 30)
    assert fn(0, 7, settings=Opts(a=5, b_len=6)) == (0, 7, 6, 30)  # positional overrides
    assert fn(0, b=8, c=9, settings=Opts(a=5, b_len=6)) == (0, 5, 8, 9)  # keyword overrides
    assert fn(x=0, settings=Opts()) == (0, 1, 2, 30)  # the settings' defaults, not the function's
    with pytest.raises(ParameterError) as err:
        fn(0, bb=1, zz=2)
    assert err.value.param == "bb" and "zz" in str(err.value) and "did you mean 'b'" in str(err.value)
    with pytest.raises(ParameterError, match="settings must be a Opts"):
        fn(0, settings={"a": 1})
    with pytest.raises(TypeError, match="lacks parameters"):
        accepts_settings(Opts)(fn.__wrapped__)  # b_len has no parameter without the rename


def test_evaluate_refuses_unknown_keywords_before_any_work():
    from calibench.evaluation import evaluate

    with pytest.raises(ParameterError) as err:
        evaluate("no-such-model", "ppl:wiki", batchsize=2)
    assert err.value.param == "batchsize" and "did you mean 'batch_size'" in str(err.value)


def test_recommend_takes_its_settings():
    from calibench.predict.recommend import recommend
    from calibench.predict.settings import RecommendSettings

    settings = RecommendSettings(method="gptq", params="bits", candidates="wiki", budget=1.0)
    with pytest.raises(CalibenchError, match="--params entry 'bits' is not KEY=VALUE"):
        recommend("tiny", settings=settings)  # the settings' params text reached the function and was parsed
    with pytest.raises(ParameterError) as err:
        recommend("tiny", settings=settings, candidate="wiki")
    assert err.value.param == "candidate"


def test_compute_study_signals_takes_its_settings(tmp_path):
    from calibench.predict.settings import StudySignalsSettings
    from calibench.predict.study_signals import compute_study_signals

    with pytest.raises(CalibenchError, match="--k-layers must be at least 1, got 0"):
        compute_study_signals(tmp_path, settings=StudySignalsSettings(k_layers=0))
    with pytest.raises(CalibenchError, match="--k-layers must be at least 1, got -1"):
        compute_study_signals(tmp_path, settings=StudySignalsSettings(k_layers=3), k_layers=-1)


def _comparable(result: Any) -> dict[str, Any]:
    dumped = result.model_dump(mode="json")
    dumped.pop("seconds")
    for task in dumped["tasks"]:
        task.pop("seconds", None)
    return dumped


def test_evaluate_with_settings_equals_keywords(tiny_model_dir, heldout_file):
    from calibench.evaluation import evaluate
    from calibench.evaluation.settings import EvalSettings

    tasks = f"ppl:{heldout_file}"
    by_keywords = evaluate(str(tiny_model_dir), tasks, seq_len=32, bos="never", batch_size=2, max_windows=3)
    settings = EvalSettings(tasks=tasks, ppl_seq_len=32, bos="never")
    by_settings = evaluate(str(tiny_model_dir), settings=settings, batch_size=2, max_windows=3)
    assert by_keywords.rows and math_finite(by_keywords.rows[0].value)
    assert _comparable(by_settings) == _comparable(by_keywords)
    overridden = evaluate(
        str(tiny_model_dir), settings=EvalSettings(tasks=tasks, ppl_seq_len=16), seq_len=32, bos="never",
        batch_size=2, max_windows=3,
    )  # fmt: skip
    assert _comparable(overridden) == _comparable(by_keywords)


def math_finite(value: float | None) -> bool:
    import math

    return value is not None and math.isfinite(value)
