"""Import ``<actions_dir>/*/handler.py`` and collect their @action handlers."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from usvc_core.actions.decorator import ACTION_ATTR
from usvc_core.errors import ActionDefinitionError, ActionDiscoveryError

__all__ = ["discover_actions", "resolve_actions_dir"]


def resolve_actions_dir(actions_dir: str | Path | None) -> Path | None:
    """The actions directory: as given, relative paths tried against the working directory
    and then the directory of the ``__main__`` script. ``None`` means the default
    ``src/actions``, which may be absent."""
    raw = Path(actions_dir) if actions_dir is not None else Path("src/actions")
    candidates = [raw]
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if not raw.is_absolute() and main_file:
        candidates.append(Path(main_file).resolve().parent / raw)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    if actions_dir is not None:
        raise ActionDiscoveryError(f"actions_dir {str(actions_dir)!r} is not a directory")
    return None


def _package(name: str, path: Path) -> types.ModuleType:
    """A namespace-like package so that handlers can use relative imports."""
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        module.__package__ = name
        sys.modules[name] = module
    return module


def discover_actions(actions_dir: Path) -> list[Callable[..., Awaitable[Any]]]:
    """Import every ``*/handler.py`` under ``actions_dir`` (sorted, so the order is stable)
    and return the @action functions they define. ``sys.path`` is not touched: each module
    is loaded from its file under a package name derived from the directory."""
    digest = hashlib.sha1(str(actions_dir).encode(), usedforsecurity=False).hexdigest()[:10]
    root = f"_usvc_actions_{digest}"
    _package(root, actions_dir)
    found: list[Callable[..., Awaitable[Any]]] = []
    for handler_file in sorted(actions_dir.glob("*/handler.py")):
        sub = handler_file.parent.name
        if not sub.isidentifier():
            raise ActionDiscoveryError(
                f"{handler_file}: the directory name {sub!r} must be a valid Python identifier"
            )
        _package(f"{root}.{sub}", handler_file.parent)
        mod_name = f"{root}.{sub}.handler"
        module = sys.modules.get(mod_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(mod_name, handler_file)
            if spec is None or spec.loader is None:
                raise ActionDiscoveryError(f"cannot load {handler_file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except ActionDefinitionError:
                del sys.modules[mod_name]
                raise
            except BaseException as exc:
                del sys.modules[mod_name]
                raise ActionDiscoveryError(
                    f"importing {handler_file} failed: {type(exc).__name__}: {exc}"
                ) from exc
        found.extend(
            obj
            for obj in vars(module).values()
            if callable(obj)
            and getattr(obj, ACTION_ATTR, None) is not None
            and getattr(obj, "__module__", None) == mod_name
        )
    return found
