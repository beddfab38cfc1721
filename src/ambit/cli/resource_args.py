"""kubectl-style object arguments: ``KIND NAME...``, ``KIND[,KIND...]`` or ``KIND/NAME...``."""

from __future__ import annotations

from collections.abc import Callable

from ambit.cli.store_session import fail


def kind_names(args: tuple[str, ...], resolve: Callable[[str], str]) -> list[tuple[str, str | None]]:
    """``KIND NAME...``, ``KIND``, or ``KIND/NAME...`` (any mix of kinds) → (kind, name or None)."""
    if any("/" in arg for arg in args):
        out: list[tuple[str, str | None]] = []
        for arg in args:
            if "/" not in arg:
                fail(
                    f"error: there is no need to specify a resource type as a separate argument when passing "
                    f"arguments in resource/name form (e.g. 'ambit get resource/<resource_name>' instead of "
                    f"'ambit get resource resource/<resource_name>'): \"{arg}\""
                )
            kind_text, name = arg.split("/", 1)
            if not kind_text or not name:
                fail(f'error: "{arg}" is not KIND/NAME')
            out.append((resolve(kind_text), name))
        return out
    kinds = [resolve(k) for k in args[0].split(",") if k]
    if not kinds:
        fail("error: a resource type is required")
    if len(args) == 1:
        return [(kind, None) for kind in kinds]
    if len(kinds) > 1:
        return [(kind, name) for kind in kinds for name in args[1:]]
    return [(kinds[0], name) for name in args[1:]]
