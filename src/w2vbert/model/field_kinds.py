"""The kinds of value a config field's annotation admits: how a wrong one is worded, how a right one is stored.

In order: how a message quotes a value, one check per kind (integer, number, string, boolean, lists, the label
maps), `FieldKind`, `KINDS` (annotation -> kind), and `field_kinds`, which reads a dataclass's annotations into
its fields' kinds. A config checks its fields' types with these when it is made, and
`Wav2Vec2BertConfig.validate` (model/config_rules.py) checks them first, before each field's rules.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _shown(value: Any) -> str:
    """A value as an error message quotes it: short (long lists and strings are cut) and with its type."""
    return "None" if value is None else f"{reprlib.repr(value)} ({type(value).__name__})"


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # True is an int in Python


def _is_class_id(key: Any) -> bool:
    return _is_integer(key) or (isinstance(key, str) and re.fullmatch(r"-?[0-9]+", key) is not None)


def _integer(value: Any) -> str | None:
    return None if _is_integer(value) else f"must be an integer, got {_shown(value)}"


def _number(value: Any) -> str | None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return f"must be a number, got {_shown(value)}"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # a JSON integer of 400 digits: no float holds it
        finite = False
    return None if finite else f"must be a finite number, got {reprlib.repr(value)}"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {_shown(value)}"


def _boolean(value: Any) -> str | None:
    # Only JSON true/false: the strings "false" and "no" are truthy, so taking them as given would turn a
    # switch on that the file meant to turn off.
    return None if isinstance(value, bool) else f"must be true or false (a JSON boolean), got {_shown(value)}"


def _integers(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and all(_is_integer(v) for v in value):
        return None
    return f"must be a list of integers, got {_shown(value)}"


def _class_names(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return None
    if isinstance(value, str):  # a bare name would be read as a list of its characters
        return f"must be a list of class names, such as {json.dumps([value])}, got {_shown(value)}"
    return f"must be a list of class names (strings), got {_shown(value)}"


def _id2label(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f'must map class ids to label names, such as {{"0": "yes", "1": "no"}}, got {_shown(value)}'
    for key, label in value.items():
        if not _is_class_id(key):
            return f"keys must be integer class ids, got key {key!r}"
        if not isinstance(label, str):
            return f"entry {key!r} must be a label name (a string), got {_shown(label)}"
    if len({int(key) for key in value}) < len(value):
        return f"names one class id twice (keys {sorted(value, key=int)})"
    return None


def _label2id(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f'must map label names to class ids, such as {{"yes": 0, "no": 1}}, got {_shown(value)}'
    for label, key in value.items():
        if not isinstance(label, str):
            return f"keys must be label names (strings), got key {label!r}"
        if not _is_integer(key):
            return f"entry {label!r} must be an integer class id, got {_shown(key)}"
    return None


@dataclass(frozen=True)
class FieldKind:
    """What one field annotation admits: `problem` words a wrong value, `canonical` stores a right one."""

    problem: Callable[[Any], str | None]
    canonical: Callable[[Any], Any]
    optional: bool = False  # annotated `... | None`: null is a value (vocab_size, id2label, ...)


# The annotations the fields use, and the kind of value each admits.
KINDS: dict[Any, FieldKind] = {
    int: FieldKind(_integer, int),
    float: FieldKind(_number, float),
    str: FieldKind(_string, str),
    bool: FieldKind(_boolean, bool),
    tuple[int, ...]: FieldKind(_integers, lambda values: tuple(int(v) for v in values)),
    list[str]: FieldKind(_class_names, list),
    dict[int, str]: FieldKind(_id2label, lambda labels: {int(key): name for key, name in labels.items()}),
    dict[str, int]: FieldKind(_label2id, lambda ids: {name: int(key) for name, key in ids.items()}),
}


def field_kinds(cls: type) -> dict[str, FieldKind]:
    """Each field's kind, read from its annotation (`int | None` is the kind of `int`, null allowed)."""
    hints = typing.get_type_hints(cls)
    kinds = {}
    for f in dataclasses.fields(cls):
        hint, optional = hints[f.name], False
        if isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint):
            (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
            optional = True
        if hint not in KINDS:
            raise TypeError(f"{cls.__name__}.{f.name}: annotation {hint} has no entry in field_kinds.KINDS; add one")
        kinds[f.name] = dataclasses.replace(KINDS[hint], optional=optional)
    return kinds
