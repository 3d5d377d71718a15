"""Value classes: slotted, compared and hashed by their fields, frozen unless asked. Stdlib only.

What `dataclasses` would give, for the part portbell uses, at a fraction of its start-up cost:
`import dataclasses` alone costs `portbell who` about 8 ms (it imports `inspect`, and with it
`ast`, `dis`, `tokenize`...), and each decorated class about 0.7 ms more, where the whole
command has about 30 ms over the bare interpreter (bench/cli.py; PRODUCT.md's target is 2.5x).
Here a class costs one small compile of its methods (about 0.15 ms), written as plain code over
its fields, as fast as dataclasses' own.

    @value
    class Owner:
        pid: int | None
        name: str | None = None
        exe: str | None = field(None, compare=False)  # descriptive: not part of equality

The fields are the class's own annotations, in order; a default makes a field optional (all
after it must have one too), `field(factory=dict)` makes a fresh default for each instance.
`@value(mutable=True)` allows assignment (and, like any mutable value, is not hashable);
`@value(order=True)` adds <, <=, >, >= over the compared fields. `replace(obj, **changes)` is a
copy with some fields changed. No inheritance between value classes, no `super()` in their
methods (the class is rebuilt to take its slots).
"""

from __future__ import annotations

_MISSING = object()


class field:
    """A field's default (or `factory` for a fresh one per instance) and whether it is compared."""

    __slots__ = ("default", "factory", "compare")

    def __init__(self, default=_MISSING, *, factory=None, compare: bool = True) -> None:
        self.default, self.factory, self.compare = default, factory, compare


def value(cls=None, /, *, mutable: bool = False, order: bool = False):
    """The class decorator (see the module docstring)."""
    if cls is None:
        return lambda c: _build(c, mutable, order)
    return _build(cls, mutable, order)


def replace(obj, /, **changes):
    """A copy of a value with `changes` (field name: new value); unknown names are a TypeError."""
    for name in obj._fields:
        if name not in changes:
            changes[name] = getattr(obj, name)
    return type(obj)(**changes)


def _build(cls, mutable: bool, order: bool):
    body = dict(cls.__dict__)
    names = tuple(body.get("__annotations__", {}))
    specs = [body.pop(name, _MISSING) for name in names]
    specs = [spec if isinstance(spec, field) else field(spec) for spec in specs]
    for name in ("__dict__", "__weakref__"):
        body.pop(name, None)
    body["__slots__"] = body["_fields"] = names
    methods = _methods(cls.__qualname__, names, specs, mutable, order)
    for name, method in methods.items():
        if name == "__init__" or name not in body:  # a method the class writes itself stays
            body[name] = method
    body.setdefault("__repr__", _repr)
    if not mutable:  # (a mutable one is unhashable: Python gives a class with __eq__ alone no __hash__)
        body["__setattr__"] = body["__delattr__"] = _frozen
    return type(cls)(cls.__name__, cls.__bases__, body)  # the class dict keeps its __module__, __qualname__


def _methods(qualname: str, names, specs, mutable: bool, order: bool) -> dict:
    """`__init__`, `__eq__`, and `__hash__` (frozen) or the order (`order`), compiled in one go,
    as plain code over the fields (a compare is two tuples); defaults are bound as globals."""
    scope: dict = {"_MISSING": _MISSING, "_set": object.__setattr__}
    params, lines, optional = ["self"], [], False
    for name, spec in zip(names, specs):
        given = name
        if spec.factory is not None:
            scope[f"_f_{name}"] = spec.factory
            params.append(f"{name}=_MISSING")
            given = f"_f_{name}() if {name} is _MISSING else {name}"
        elif spec.default is not _MISSING:
            scope[f"_d_{name}"] = spec.default
            params.append(f"{name}=_d_{name}")
        elif optional:
            raise TypeError(f"{qualname}: field {name!r} without a default follows one with a default")
        else:
            params.append(name)
        optional = optional or spec.default is not _MISSING or spec.factory is not None
        lines.append(f"    self.{name} = {given}" if mutable else f"    _set(self, {name!r}, {given})")
    source = [f"def __init__({', '.join(params)}):", *lines, "    pass"]
    mine = "".join(f"self.{n}," for n, s in zip(names, specs) if s.compare)
    theirs = mine.replace("self.", "other.")
    ops = {"__eq__": "=="} | ({"__lt__": "<", "__le__": "<=", "__gt__": ">", "__ge__": ">="} if order else {})
    for op, sign in ops.items():
        source += [
            f"def {op}(self, other):",
            "    if other.__class__ is self.__class__:",
            f"        return ({mine}) {sign} ({theirs})",
            "    return NotImplemented",
        ]
    if not mutable:
        source += ["def __hash__(self):", f"    return hash(({mine}))"]
    exec(compile("\n".join(source) + "\n", f"<value {qualname}>", "exec"), scope)
    methods = {name: scope[name] for name in (*ops, "__init__", "__hash__") if name in scope}
    for name, method in methods.items():
        method.__qualname__ = f"{qualname}.{name}"
    return methods


def _repr(self) -> str:
    return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"


def _frozen(self, name, *_):
    raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")
