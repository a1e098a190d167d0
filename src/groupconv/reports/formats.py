"""How the reports print numbers, shapes and JSON (their tables: :mod:`groupconv.tables`).

Shared by ``explain``, ``diagram`` and ``summary``, so their text and JSON look alike.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import ClassVar


class JsonReport:
    """For a report dataclass: :meth:`to_dict` (plain JSON types, ``schema`` first) and :meth:`to_json`.

    Each subclass names its schema, documented in ``docs/cli-json.md``.
    """

    schema: ClassVar[str]

    def to_dict(self) -> dict:
        return {"schema": self.schema, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return to_json(self.to_dict())


def to_json(value: object, indent: str = "") -> str:
    """JSON indented by two spaces, with each list of plain values kept on one line.

    Example:
        >>> print(to_json({"weight_shape": (8, 2, 3, 3), "groups": [{"group": 0}]}))
        {
          "weight_shape": [8, 2, 3, 3],
          "groups": [
            {
              "group": 0
            }
          ]
        }
    """
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(key))}: {to_json(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, (list, tuple)) and any(isinstance(item, (dict, list, tuple)) for item in value):
        return "[\n" + ",\n".join(inner + to_json(item, inner) for item in value) + f"\n{indent}]"
    return json.dumps(value)


def shape(values: Sequence[int] | None) -> str:
    """A shape as PyTorch prints a tuple, or ``-`` when there is none.

    Example:
        >>> shape((1, 8, 30, 30)), shape(None)
        ('(1, 8, 30, 30)', '-')
    """
    return "-" if values is None else str(tuple(values))


def kernel(values: Sequence[int] | None) -> str:
    """A kernel size as ``3x3``, or ``-`` when there is none.

    Example:
        >>> kernel((3, 3)), kernel((5,))
        ('3x3', '5')
    """
    return "-" if values is None else "x".join(map(str, values))


def span(start: int, stop: int) -> str:
    """The channel range ``start <= c < stop`` as ``start-last``, or one index.

    Example:
        >>> span(0, 4), span(7, 8)
        ('0-3', '7')
    """
    return str(start) if stop - start == 1 else f"{start}-{stop - 1}"


def percent(part: int, whole: int) -> str:
    """``part`` as a share of ``whole``, to one decimal place where it is not whole.

    Example:
        >>> percent(144, 288), percent(144, 296)
        ('50%', '48.6%')
    """
    value = 100 * part / whole if whole else 0.0
    return f"{value:.0f}%" if value == round(value) else f"{value:.1f}%"


def plural(count: int, word: str) -> str:
    """``count word``, with an ``s`` unless ``count`` is 1.

    Example:
        >>> plural(1, "kernel"), plural(4, "kernel")
        ('1 kernel', '4 kernels')
    """
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
