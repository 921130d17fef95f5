"""Named points inside the use cases where a test can run a second operation.

Production code calls `reached("stop.drain", service=...)`; with no hook installed that is a
dictionary lookup. A test installs a hook with `at(...)` and so runs, say, a start exactly
while a stop waits for draining: a deterministic interleaving, no sleeps and no luck.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_hooks: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
_lock = threading.Lock()


def reached(name: str, **info: Any) -> None:
    """Run the hooks installed at this point, if any."""
    hooks = _hooks.get(name)
    if hooks:
        for hook in list(hooks):
            hook(info)


@contextmanager
def at(
    name: str, action: Callable[[dict[str, Any]], None], *, times: int = 1, skip: int = 0
) -> Iterator[list[dict[str, Any]]]:
    """While inside, run `action` when `name` is reached: after `skip` passes, `times` times.
    Yields the info of every pass, so a test can assert the point was reached."""
    passes: list[dict[str, Any]] = []

    def hook(info: dict[str, Any]) -> None:
        passes.append(info)
        if skip < len(passes) <= skip + times:
            action(info)

    with _lock:
        _hooks.setdefault(name, []).append(hook)
    try:
        yield passes
    finally:
        with _lock:
            _hooks[name].remove(hook)
