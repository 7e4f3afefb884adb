"""One generic registry for every kind of named thing: methods, sources, builders, task kinds, signals, ...

>>> METHODS: Registry[Method] = Registry("method")
>>> @METHODS.register("gptq")
... def gptq(...): ...
>>> METHODS.get("gtpq")          # UnknownNameError: unknown method 'gtpq' (did you mean 'gptq'?); known: ...

An entry is either the object itself or a lazy ``"module:attr"`` string that
is imported on first lookup.  Lazy entries are how a lower layer names what a
higher layer provides without importing it (the data layer lists the ``self``
builder that :mod:`calibench.selfcal` defines), and how heavy modules stay
unimported until used.  Every lookup failure is one :class:`UnknownNameError`
with a did-you-mean hint, so every registry refuses a misspelt name alike.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, overload

from calibench.core.errors import CalibenchError, UnknownNameError, did_you_mean

T = TypeVar("T")


def split_target(target: str) -> tuple[str, str]:
    """``"package.module:attr"`` as (module, attr); anything else is a ValueError."""
    module_name, sep, attr = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not sep or not module_name or not attr:
        raise ValueError(f"a lazy registry entry is 'module:attr', got {target!r}")
    return module_name, attr


def load_target(target: str) -> Any:
    """The object a ``"package.module:attr"`` string names."""
    module_name, attr = split_target(target)
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named entries of one kind, registered by decorator or call, looked up with did-you-mean."""

    def __init__(self, kind: str, *, validate: Callable[[Any], None] | None = None, ordered: bool = False) -> None:
        """``validate`` checks each entry as it arrives; ``ordered``: :meth:`names` and :meth:`items` keep
        registration order (for registries whose order means something: report sections, signals), not sorted."""
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._validate = validate
        self._ordered = ordered

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = None) -> Any:
        """``registry.register(name, obj)`` or ``@registry.register(name)``; a second registration of a name is
        refused unless it is the same object (a module imported twice)."""

        def add(value: T) -> T:
            self._check_new(name, value)
            if self._validate is not None:
                self._validate(value)
            self._entries[name] = value
            return value

        return add if obj is None else add(obj)

    def register_lazy(self, name: str, target: str) -> None:
        """Name an entry by ``"module:attr"``; the module is imported on the first lookup of ``name``."""
        split_target(target)
        existing = self._entries.get(name)
        if existing is not None and existing != target:
            raise CalibenchError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = target

    def _check_new(self, name: str, value: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name")
        existing = self._entries.get(name)
        if existing is None or existing is value or isinstance(existing, str):
            return  # new, the same object again, or the object a lazy entry names arriving
        raise CalibenchError(f"{self.kind} '{name}' is already registered")

    def get(self, name: str) -> T:
        """The entry ``name``; an unknown name is an :class:`UnknownNameError` listing the known ones."""
        if not isinstance(name, str) or name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            loaded = load_target(entry)
            if self._validate is not None:
                self._validate(loaded)
            self._entries[name] = loaded
            return loaded
        return entry

    def unknown_message(self, name: object) -> str:
        return f"unknown {self.kind} '{name}'{did_you_mean(str(name), self.names())}"

    def names(self) -> list[str]:
        """Every registered name, sorted or in registration order (lazy entries included, not imported)."""
        return list(self._entries) if self._ordered else sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) for every name, in :meth:`names` order; lazy entries are imported."""
        return [(name, self.get(name)) for name in self.names()]

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a throwaway entry clean up with this)."""
        self._entries.pop(name, None)

    def move_before(self, name: str, other: str) -> None:
        """Place ``name`` just before ``other`` in registration order (what an ordered registry lists)."""
        for known in (name, other):
            if known not in self._entries:
                raise UnknownNameError(self.unknown_message(known))
        if name == other:
            return
        moved = self._entries.pop(name)
        entries = list(self._entries.items())
        at = [key for key, _ in entries].index(other)
        self._entries = dict([*entries[:at], (name, moved), *entries[at:]])

    @contextmanager
    def temporarily(self, name: str, obj: T) -> Iterator[T]:
        """``name`` as ``obj`` inside a ``with`` block, then whatever was there before (for tests)."""
        before = {name: self._entries[name]} if name in self._entries else {}
        if self._validate is not None:
            self._validate(obj)
        self._entries[name] = obj
        try:
            yield obj
        finally:
            if before:
                self._entries.update(before)  # in place: the entry keeps its position
            else:
                self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
