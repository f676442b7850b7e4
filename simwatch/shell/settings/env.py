"""The ``SIMWATCH_`` environment: pydantic-settings' ``EnvSettingsSource``, plus a small
adapter for what it does not do itself.

pydantic-settings maps ``SIMWATCH_HTTP__PORT`` to ``http.port`` (the ``env_prefix``, then
``env_nested_delimiter`` between levels, case-insensitive), decodes lists and sections given
as JSON, and lays a section's more specific variables over its JSON. The adapter
(``EnvSource.__call__``) adds three things:

* every ``SIMWATCH_*`` name is checked against the settings tree before anything is read:
  a name that cannot be placed (below a list or a value, an empty part) or a value that is
  not JSON where JSON is needed is a ``ConfigError`` naming the variable (pydantic-settings
  would skip such a variable, and its JSON errors do not name the variable);
* an unknown top-level name (``SIMWATCH_STAT_DIR``) is passed on, so it fails as an unknown
  option like a typo in the file (pydantic-settings ignores it);
* one field of a list item the file defines can be set by its index
  (``SIMWATCH_SOURCES__MQTT__0__PASSWORD``): pydantic-settings has no list indexes, and a
  list from a higher source replaces the lower one's whole list.

``env_origins`` says which variable each option came from, so errors can name it.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic_settings import BaseSettings, EnvSettingsSource

from simwatch.shell.settings.base import (
    ConfigError,
    Loc,
    bare,
    dotted,
    is_structured,
    model_class,
)

_MAX_INDEX_DIGITS = 9  # a longer "index" is no index (and int() of a huge one is slow)


def _is_index(part: str) -> bool:
    return part.isascii() and part.isdigit() and len(part) <= _MAX_INDEX_DIGITS


def _variable_loc(name: str, prefix: str, nesting: str) -> Loc:
    parts = name[len(prefix) :].lower().split(nesting)
    return tuple(int(p) if _is_index(p) else p for p in parts)


def _prefixed(environ: Mapping[str, str], prefix: str, nesting: str) -> list[str]:
    """The names starting with ``prefix`` (any case): whole sections and lists first, so a
    deeper variable refines them, then by name."""
    names = sorted(n for n in environ if n.lower().startswith(prefix.lower()))
    names.sort(key=lambda n: n.count(nesting))
    return names


def env_origins(environ: Mapping[str, str], prefix: str, nesting: str) -> dict[Loc, str]:
    """The option path each ``prefix`` variable names, mapped to the variable's name
    (where several match an error, it names the most specific, else the first)."""
    names = _prefixed(environ, prefix, nesting)
    return {_variable_loc(name, prefix, nesting): name for name in names}


@dataclass(frozen=True)
class _Variable:
    name: str  # as given
    loc: Loc  # the option it sets, list indexes as ints
    value: object  # the text, or its JSON when the option is a list or a section
    # "native" (pydantic-settings reads it), "unknown" (an unknown top-level name) or
    # "item" (one field of a list item: loc[index_at] is the index)
    kind: Literal["native", "unknown", "item"]
    index_at: int = -1


def _lookup(data: Mapping[str, Any], keys: Sequence[int | str]) -> object:
    node: object = data
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _with(data: Mapping[Any, Any], keys: Sequence[int | str], value: object) -> dict[Any, Any]:
    """A copy of ``data`` with ``value`` at ``keys`` (sections copied or made on the way)."""
    out = dict(data)
    head, *tail = keys
    if tail:
        inner = out.get(head)
        out[head] = _with(inner if isinstance(inner, Mapping) else {}, tail, value)
    else:
        out[head] = value
    return out


class EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over ``environ``, with the adapter above;
    ``file_data`` is what the TOML source read (where list items to override are found)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        environ: Mapping[str, str],
        file_data: Mapping[str, Any],
    ) -> None:
        super().__init__(settings_cls)
        if not self.env_nested_delimiter:  # pragma: no cover - Settings sets it
            raise TypeError("the settings class must set env_nested_delimiter")
        self._nesting: str = self.env_nested_delimiter
        self._environ = dict(environ)
        self._file_data = file_data
        self.env_vars = {}  # set by __call__, once every name is checked

    def _list_var(self, loc: Loc) -> str:
        return self.env_prefix.upper() + self._nesting.join(str(p).upper() for p in loc)

    def _plan(self, name: str, raw: str) -> _Variable:
        """Where the variable ``name`` goes; ``ConfigError`` when it cannot be placed."""
        nesting = self._nesting
        parts = name[len(self.env_prefix) :].lower().split(nesting)
        if "" in parts:
            raise ConfigError([f"{name}: bad variable name (empty part between {nesting!r})"])
        loc: list[int | str] = []
        ann: object = self.settings_cls
        index_at = -1
        for i, part in enumerate(parts):
            node = bare(ann)
            model = model_class(node)
            if model is not None:
                if part not in model.model_fields:
                    # an unknown option: validation reports it (with a "did you mean")
                    kind: Literal["native", "unknown", "item"] = (
                        "item" if index_at >= 0 else "native" if loc else "unknown"
                    )
                    return _Variable(name, (*loc, *parts[i:]), raw, kind, index_at)
                ann = model.model_fields[part].annotation
            elif get_origin(node) is dict:
                ann = get_args(node)[1]
            elif get_origin(node) is list:
                item = model_class(bare(get_args(node)[0]))
                if item is None or index_at >= 0 or not _is_index(part) or i == len(parts) - 1:
                    how = f"set the whole list as JSON in {self._list_var(tuple(loc))}"
                    if item is not None and index_at < 0:
                        how += f", or one field of an item as {self._list_var((*loc, 0, 'FIELD'))}"
                    raise ConfigError([f"{dotted(loc)} (from {name}): a list: {how}"])
                index_at = len(loc)
                loc.append(int(part))
                ann = item
                continue
            else:
                where = dotted(loc)
                raise ConfigError([f"{where} (from {name}): not a section, so it has no {part!r}"])
            loc.append(part)
        value: object = raw
        if is_structured(ann):
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
                raise ConfigError([f"{dotted(loc)} (from {name}): not valid JSON: {exc}"]) from None
        return _Variable(name, tuple(loc), value, "item" if index_at >= 0 else "native", index_at)

    def _override_item(self, data: dict[str, Any], var: _Variable) -> dict[str, Any]:
        """``data`` with one field of a list item set; the list is the environment's if it
        gives one, else the file's."""
        list_loc, index = var.loc[: var.index_at], var.loc[var.index_at]
        rest = var.loc[var.index_at + 1 :]
        assert isinstance(index, int)
        items = _lookup(data, list_loc)
        if items is None:
            items = _lookup(self._file_data, list_loc)
        where = dotted(var.loc[: var.index_at + 1])
        if not isinstance(items, list) or index >= len(items):
            how = f"set the whole list as JSON in {self._list_var(list_loc)}"
            raise ConfigError([f"{where} (from {var.name}): no such item to override; {how}"])
        item = items[index]
        if not isinstance(item, Mapping):
            no_field = f"not a section, so it has no {rest[0]!r}"
            raise ConfigError([f"{where} (from {var.name}): {no_field}"])
        new_items = list(items)
        new_items[index] = _with(item, rest, var.value)
        return _with(data, list_loc, new_items)

    def __call__(self) -> dict[str, Any]:
        names = _prefixed(self._environ, self.env_prefix, self._nesting)
        plans = [self._plan(name, self._environ[name]) for name in names]
        self.env_vars = {p.name.lower(): self._environ[p.name] for p in plans if p.kind == "native"}
        data = super().__call__()
        for plan in plans:
            if plan.kind == "unknown":
                data.setdefault(str(plan.loc[0]), self._environ[plan.name])
            elif plan.kind == "item":
                data = self._override_item(data, plan)
        return data
