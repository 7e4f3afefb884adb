"""The one generic registry (calibench.core.registry) and every registry built on it."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from calibench.core.errors import CalibenchError, UnknownNameError
from calibench.core.registry import Registry, load_target


def methods() -> Registry[object]:
    found: Registry[object] = Registry("method")
    found.register("rtn", object())
    found.register("gptq", object())
    return found


# ----------------------------------------------------------------- lookups and the did-you-mean message


def test_unknown_name_says_the_closest_and_every_known_one():
    with pytest.raises(UnknownNameError) as err:
        methods().get("gtpq")
    assert str(err.value) == "unknown method 'gtpq' (did you mean 'gptq'?); known: gptq, rtn"
    with pytest.raises(UnknownNameError) as err:
        methods().get("zzzzzz")  # nothing close: no hint, still the known names
    assert str(err.value) == "unknown method 'zzzzzz'; known: gptq, rtn"
    with pytest.raises(UnknownNameError, match="unknown method 'None'"):
        methods().get(None)  # type: ignore[arg-type]


def test_register_by_call_and_by_decorator():
    found: Registry[Callable[[], int]] = Registry("thing")

    @found.register("one")
    def one() -> int:
        return 1

    two = found.register("two", lambda: 2)
    assert found.get("one") is one and found.get("two") is two and found.get("one")() == 1
    assert "one" in found and "three" not in found and 1 not in found
    assert len(found) == 2 and list(found) == ["one", "two"]
    found.unregister("one")
    found.unregister("never there")  # removing what is not there is no error
    assert found.names() == ["two"]
    with pytest.raises(UnknownNameError):
        found.get("one")


def test_validate_runs_on_every_entry():
    def positive(value: int) -> None:
        if value <= 0:
            raise ValueError(f"{value} is not positive")

    found: Registry[int] = Registry("count", validate=positive)
    found.register("a", 1)
    with pytest.raises(ValueError, match="-1 is not positive"):
        found.register("b", -1)
    assert "b" not in found
    with pytest.raises(ValueError, match="0 is not positive"), found.temporarily("c", 0):
        pass
    assert "c" not in found


# ----------------------------------------------------------------- duplicates


def test_a_second_registration_of_a_name_is_refused():
    found = methods()
    first = found.get("rtn")
    with pytest.raises(CalibenchError, match="method 'rtn' is already registered"):
        found.register("rtn", object())
    assert found.get("rtn") is first  # the first one stays
    assert found.register("rtn", first) is first  # the same object again (a module imported twice) is fine
    found.register_lazy("lazy", "json:dumps")
    found.register_lazy("lazy", "json:dumps")  # the same target again is fine
    with pytest.raises(CalibenchError, match="method 'lazy' is already registered"):
        found.register_lazy("lazy", "json:loads")
    with pytest.raises(CalibenchError, match="method 'gptq' is already registered"):
        found.register_lazy("gptq", "json:loads")
    with pytest.raises(ValueError, match="non-empty name"):
        found.register("", object())


# ----------------------------------------------------------------- lazy entries


@pytest.fixture
def lazy_module(tmp_path, monkeypatch):
    """A module on sys.path that counts how often it is imported and registers itself when it is."""
    name = "calibench_registry_probe"
    (tmp_path / f"{name}.py").write_text(
        "import builtins\n"
        "builtins.calibench_probe_imports = getattr(builtins, 'calibench_probe_imports', 0) + 1\n"
        "class Thing:\n"
        "    pass\n"
        "def register_into(registry):\n"
        "    registry.register('probe', Thing)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins

    monkeypatch.setattr(builtins, "calibench_probe_imports", 0, raising=False)
    yield name
    sys.modules.pop(name, None)


def test_a_lazy_entry_is_imported_on_its_first_lookup_only(lazy_module):
    import builtins

    found: Registry[type] = Registry("thing")
    found.register("eager", int)
    found.register_lazy("probe", f"{lazy_module}:Thing")
    assert "probe" in found and found.names() == ["eager", "probe"] and len(found) == 2
    assert found.get("eager") is int
    with pytest.raises(UnknownNameError, match="did you mean 'probe'"):
        found.get("prob")
    assert lazy_module not in sys.modules and builtins.calibench_probe_imports == 0  # listed, never imported
    thing = found.get("probe")
    assert thing.__name__ == "Thing" and thing.__module__ == lazy_module
    assert found.get("probe") is thing and builtins.calibench_probe_imports == 1  # once, then the object
    assert found.items() == [("eager", int), ("probe", thing)]


def test_the_module_a_lazy_entry_names_may_register_itself(lazy_module):
    """What the tracking backends do: the lazy name, then the module's own registration when it is imported."""
    found: Registry[type] = Registry("thing")
    found.register_lazy("probe", f"{lazy_module}:Thing")
    module = __import__(lazy_module)
    module.register_into(found)
    assert found.get("probe") is module.Thing


def test_items_imports_lazy_entries_and_validates_them(lazy_module):
    seen = []
    found: Registry[type] = Registry("thing", validate=seen.append)
    found.register_lazy("probe", f"{lazy_module}:Thing")
    assert seen == []  # a lazy entry is validated when it arrives, not when named
    ((name, thing),) = found.items()
    assert name == "probe" and seen == [thing]


@pytest.mark.parametrize("target", ["json.dumps", "json", ":dumps", "json:", ":", ""])
def test_a_lazy_entry_must_be_module_colon_attr(target):
    found: Registry[object] = Registry("thing")
    with pytest.raises(ValueError, match="a lazy registry entry is 'module:attr', got"):
        found.register_lazy("x", target)
    assert "x" not in found
    with pytest.raises(ValueError, match="'module:attr'"):
        load_target(target)


def test_a_lazy_entry_naming_what_does_not_exist_fails_on_lookup():
    found: Registry[object] = Registry("thing")
    found.register_lazy("gone", "calibench_no_such_module_anywhere:thing")
    found.register_lazy("missing", "json:no_such_function")
    found.register_lazy("dotted", "json.decoder:JSONDecoder.decode")
    with pytest.raises(ModuleNotFoundError):
        found.get("gone")
    with pytest.raises(AttributeError):
        found.get("missing")
    import json.decoder

    assert found.get("dotted") is json.decoder.JSONDecoder.decode


# ----------------------------------------------------------------- order


def test_names_and_items_are_sorted_unless_ordered():
    plain: Registry[int] = Registry("number")
    ordered: Registry[int] = Registry("number", ordered=True)
    for value, name in enumerate(["zeta", "alpha", "mu"]):
        plain.register(name, value)
        ordered.register(name, value)
    ordered.register_lazy("beta", "json:dumps")  # lazy entries take their place in the order too
    assert plain.names() == list(plain) == ["alpha", "mu", "zeta"]
    assert plain.items() == [("alpha", 1), ("mu", 2), ("zeta", 0)]
    assert ordered.names() == list(ordered) == ["zeta", "alpha", "mu", "beta"]
    assert [name for name, _ in ordered.items()] == ordered.names()
    with pytest.raises(UnknownNameError, match="known: alpha, beta, mu, zeta"):  # the message lists them sorted
        ordered.get("nope")


def test_move_before_and_temporarily_keep_the_order():
    found: Registry[int] = Registry("section", ordered=True)
    for value, name in enumerate(["a", "b", "c", "d"]):
        found.register(name, value)
    found.move_before("d", "b")
    assert found.names() == ["a", "d", "b", "c"]
    found.move_before("a", "a")
    assert found.names() == ["a", "d", "b", "c"]
    with pytest.raises(UnknownNameError, match="unknown section 'x'"):
        found.move_before("a", "x")
    with pytest.raises(UnknownNameError, match="unknown section 'x'"):
        found.move_before("x", "a")
    with found.temporarily("b", 99) as value:  # a replacement keeps its place ...
        assert value == 99 and found.get("b") == 99 and found.names() == ["a", "d", "b", "c"]
    assert found.get("b") == 1 and found.names() == ["a", "d", "b", "c"]  # ... and the old entry comes back
    with pytest.raises(RuntimeError), found.temporarily("new", 7):
        assert found.names()[-1] == "new"
        raise RuntimeError
    assert "new" not in found  # gone again, even after an exception


# ----------------------------------------------------------------- every registry in calibench


def converted_registries() -> dict[str, Registry]:
    from calibench.assets import ASSETS
    from calibench.card.export import FORMATS
    from calibench.compress.methods import METHODS
    from calibench.compress.presets import MODIFIERS, PRESETS
    from calibench.curate.capabilities import CAPABILITIES
    from calibench.data.sources import SOURCES
    from calibench.inspect.study_task import ACTIVATION_TASKS
    from calibench.predict.signals import SIGNALS
    from calibench.report.sections import PROVIDERS
    from calibench.study.executors import EXECUTORS
    from calibench.study.perturbations import PERTURBATIONS
    from calibench.tracking import TRACKERS
    from calibench.vocab.modes import MODES

    return {
        "assets": ASSETS,
        "sources": SOURCES,
        "methods": METHODS,
        "presets": PRESETS,
        "preset modifiers": MODIFIERS,
        "signals": SIGNALS,
        "trackers": TRACKERS,
        "perturbations": PERTURBATIONS,
        "executors": EXECUTORS,
        "capabilities": CAPABILITIES,
        "vocab modes": MODES,
        "export formats": FORMATS,
        "report sections": PROVIDERS,
        "activation tasks": ACTIVATION_TASKS,
    }


def misspelt(registry: Registry) -> tuple[str, str]:
    """A name one letter longer than a registered one (close enough for a hint), and that name."""
    name = registry.names()[0]
    bad = f"{name}x"
    assert bad not in registry
    return name, bad


def test_every_registry_is_a_registry_that_refuses_a_misspelt_name_with_a_hint():
    found = converted_registries()
    assert len(found) == 14
    for label, registry in found.items():
        assert isinstance(registry, Registry), label
        assert len(registry) > 0, label
        name, bad = misspelt(registry)
        with pytest.raises(UnknownNameError) as err:
            registry.get(bad)
        message = str(err.value)
        assert message.startswith(f"unknown {registry.kind} '{bad}' (did you mean '"), (label, message)
        assert f"known: {', '.join(sorted(registry.names()))}" in message, label
        assert "\n" not in message


def test_every_public_lookup_raises_the_registrys_error(tmp_path):
    """The module-level lookups kept for their callers all answer an unknown name with the registry's message."""
    from calibench.assets import get_asset
    from calibench.card.export import get_format
    from calibench.compress.methods import resolve
    from calibench.curate.capabilities import get_capability
    from calibench.data.sources import get_source
    from calibench.inspect.study_task import split_activation_tasks
    from calibench.predict.signals import get_signal, parse_signals
    from calibench.report.sections import register
    from calibench.study.api import run_study
    from calibench.study.perturbations import get as get_perturbation
    from calibench.tracking import get_tracker
    from calibench.vocab.modes import get_mode

    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: get_asset("smollm2-135"), "unknown asset 'smollm2-135' (did you mean 'smollm2-135m'?)"),
        (lambda: get_source("wikki"), "unknown source 'wikki' (did you mean 'wiki'?)"),
        (lambda: resolve("sparsegpt+gtpq"), "unknown method 'gtpq' (did you mean 'gptq'?)"),
        (lambda: get_signal("coverag"), "unknown signal 'coverag' (did you mean 'coverage'?)"),
        (lambda: parse_signals("coverag"), "unknown signal 'coverag' (did you mean 'coverage'?)"),
        (lambda: get_tracker("mlflo"), "unknown tracking backend 'mlflo' (did you mean 'mlflow'?)"),
        (lambda: get_perturbation("thread"), "unknown perturbation 'thread' (did you mean 'threads'?)"),
        (lambda: get_capability("mathh"), "unknown capability 'mathh' (did you mean 'math'?)"),
        (lambda: get_mode("restrict"), "unknown vocab mode 'restrict' (did you mean 'restricted'?)"),
        (lambda: get_format("jsonll"), "unknown export format 'jsonll' (did you mean 'jsonl'?)"),
        (
            lambda: register("x", print, before="activation"),
            "unknown report section provider 'activation' (did you mean 'activations'?)",
        ),
        (
            lambda: split_activation_tasks(["act:outlier"]),
            "unknown activation task 'act:outlier' (did you mean 'act:outliers'?)",
        ),
        (
            lambda: run_study(tmp_path / "none.yaml", tmp_path / "out", executor="lcoal"),
            "unknown executor 'lcoal' (did you mean 'local'?); known: local, ray",
        ),
    ]
    for call, start in calls:
        with pytest.raises(UnknownNameError) as err:
            call()
        assert str(err.value).startswith(start), str(err.value)
    # the two lookups that also take something other than a name say so after the registry's message
    with pytest.raises(UnknownNameError, match=r"; known: .*wiki.*; or give a \.txt/\.jsonl/\.parquet file$"):
        get_source("wikki")
    with pytest.raises(UnknownNameError, match=r"; known: code, commonsense, language_modelling, math; or give NAME="):
        get_capability("mathh")
