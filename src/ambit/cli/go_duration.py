"""The ``--timeout`` kubectl takes: a Go duration (``time.ParseDuration``: ``90s``, ``2m``, ``1h30m``,
``500ms``, ``0``), parsed by :func:`ambit.resources.durations.parse_go_nanos`; one click type for every
command that takes one (``rollout status``, ``drain``)."""

from __future__ import annotations

import click

from ambit.resources.durations import SECOND, parse_go_nanos

__all__ = ["SECOND", "GoDuration"]


class GoDuration(click.ParamType[int]):
    """A non-negative Go duration, as nanoseconds (so it prints back exactly as Go does)."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            nanos = parse_go_nanos(str(value))
        except ValueError:
            self.fail(f'time: invalid duration "{value}"', param, ctx)
        if nanos < 0:
            self.fail(f"must not be negative: {value}", param, ctx)
        return nanos
