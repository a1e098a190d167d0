"""The one table writer: plain-text tables for terminals, Markdown tables for docs/.

Every report and the tuner print through these two, so all tables look alike.
"""

from __future__ import annotations

from collections.abc import Sequence


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str = "", indent: str = "") -> str:
    """Columns padded to their widest cell; ``align`` has one ``<`` or ``>`` per column (default: all ``<``).

    Example:
        >>> print(text_table(["groups", "weight"], [[1, "[8, 4, 3, 3]"], [2, "[8, 2, 3, 3]"]], "><"))
        groups  weight
        ------  ------------
             1  [8, 4, 3, 3]
             2  [8, 2, 3, 3]
    """
    align = align or "<" * len(headers)
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(indent + line for line in lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` has one ``<`` or ``>`` per column (default: Markdown's own).

    Example:
        >>> print(markdown_table(["groups", "params"], [[1, "288"], [2, "144"]], "<>"))
        | groups | params |
        |---|---:|
        | 1 | 288 |
        | 2 | 144 |
    """
    rule = "|" + "".join({"<": "---|", ">": "---:|"}[a] for a in align or "<" * len(headers))
    lines = ["| " + " | ".join(str(cell) for cell in row) + " |" for row in [headers, *rows]]
    lines.insert(1, rule)
    return "\n".join(lines)
