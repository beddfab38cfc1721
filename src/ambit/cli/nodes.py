"""The `--node` option's type: `2` and `node2` name the same node; anything else is a usage error."""

from __future__ import annotations

import click


class NodeName(click.ParamType[str]):
    name = "NODE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        number = text[4:] if text.startswith("node") else text
        if not number.isdigit() or int(number) < 1:
            self.fail(f"{value!r} is not a node: give its number (2) or its name (node2)", param, ctx)
        return f"node{int(number)}"


NODE = NodeName()
