"""Settings forms: HTML fields named `section.key`, typed by the config schema, saved whole."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from device.config import Config, ConfigError, apply_changes, secret_keys, sections
from device.controller import Controller


@dataclass(frozen=True)
class Field:
    """One input of a settings form, described from the config schema."""

    name: str  # "section.key"
    kind: str  # "bool" | "int" | "float" | "str" | "choice" | "secret"
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def step(self) -> str:
        return "1" if self.kind == "int" else "any"


def describe(name: str) -> Field:
    """The schema of `section.key` as a form field."""
    section, key = name.split(".")
    cls = sections()[section]
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == key)
    kind = get_type_hints(cls)[key].__name__
    if name in secret_keys():
        kind = "secret"
    elif meta["choices"]:
        kind = "choice"
    return Field(name, kind, meta["doc"], meta["choices"] or (), meta["minimum"], meta["maximum"])


def current_values(config: Config, names: Iterable[str]) -> dict[str, Any]:
    """What the form shows; a secret shows as "" (the browser never receives it)."""
    values = {}
    for name in names:
        section, key = name.split(".")
        values[name] = "" if name in secret_keys() else getattr(getattr(config, section), key)
    return values


def submitted_values(form: Mapping[str, str], names: Iterable[str]) -> dict[str, Any]:
    """What the form shows again after a refused save: what was typed, but never a secret."""
    values: dict[str, Any] = {}
    for name in names:
        kind = describe(name).kind
        values[name] = (
            name in form if kind == "bool" else "" if kind == "secret" else form.get(name, "")
        )
    return values


def stored_secrets(config: Config, names: Iterable[str]) -> set[str]:
    """The secret fields among `names` that hold a value (the page says "unchanged")."""
    return {
        name
        for name in names
        if name in secret_keys()
        and getattr(getattr(config, name.split(".")[0]), name.split(".")[1])
    }


def parse(
    form: Mapping[str, str], names: Iterable[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Typed changes from a submitted form, and a problem per field that is not even a value.

    An unticked checkbox is absent from a form, so a bool is `name in form`. An empty
    secret keeps the stored one (it is never shown); `<name>.clear` removes it.
    """
    changes: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name in names:
        spec = describe(name)
        section, key = name.split(".")
        raw = form.get(name, "").strip()
        if spec.kind == "bool":
            value: Any = name in form
        elif spec.kind == "secret":
            if f"{name}.clear" in form:
                value = ""
            elif raw:
                value = form[name]  # passwords keep their spaces
            else:
                continue
        elif spec.kind in ("int", "float"):
            try:
                value = int(raw) if spec.kind == "int" else float(raw)
            except ValueError:
                errors[name] = "enter a whole number" if spec.kind == "int" else "enter a number"
                continue
        else:
            value = raw
        changes.setdefault(section, {})[key] = value
    return changes, errors


def save(controller: Controller, form: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """Validate and save the whole form at once; the problems by field name, {} when saved."""
    names = list(names)
    changes, errors = parse(form, names)
    try:
        if errors:  # not saved; the other fields are still checked, to show every problem
            apply_changes(controller.config, changes, "setup page")
        else:
            controller.update_settings(changes, "setup page")
    except ConfigError as err:
        errors.update(err.problems)
    return {name: errors[name] for name in [*names, *errors] if name in errors}
