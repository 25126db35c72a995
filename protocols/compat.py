"""Schema descriptors of message classes and the compatibility rules between two of them.

A change is compatible when readers of either version can read messages of the other
("both ways"). Readers ignore fields they do not know, so:

- adding a field is compatible when it has a default; a new required field is not (old
  messages lack it);
- removing a field is compatible when old readers had a default for it;
- a rename is compatible when the wire name stays (``serialization_alias`` = the old name),
  or the new field also accepts the old name and old readers had a default;
- adding enum values is compatible (readers declare how they read an unknown value, e.g.
  with `OpenStrEnum`); removing one is not;
- changing a default is not (writers leave default values out of the payload);
- any other change of a field's type is incompatible.

Descriptors are plain JSON data, so they can be committed as a snapshot and compared in CI.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, TypeAdapter

__all__ = ["compare_descriptors", "describe_message"]

_DROP_KEYS = frozenset({"title", "description", "examples", "deprecated"})


def _accepted_names(name: str, info: Any, model: type[BaseModel]) -> list[str]:
    names: set[str] = set()
    va = info.validation_alias
    if isinstance(va, str):
        names.add(va)
    elif isinstance(va, AliasChoices):
        names.update(c for c in va.choices if isinstance(c, str))
    elif info.alias:
        names.add(info.alias)
    else:
        names.add(name)
    config = model.model_config
    if config.get("validate_by_name") or config.get("populate_by_name"):
        names.add(name)
    return sorted(names)


def _normalize(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            ref_name = ref.removeprefix("#/$defs/")
            if ref_name in seen:
                return {"$recursive": ref_name}
            return _normalize(defs.get(ref_name, {}), defs, (*seen, ref_name))
        return {
            k: _normalize(v, defs, seen)
            for k, v in sorted(node.items())
            if k not in _DROP_KEYS and k != "$defs"
        }
    if isinstance(node, list):
        return [_normalize(v, defs, seen) for v in node]
    return node


def _field_schema(info: Any) -> Any:
    annotation = info.annotation
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]  # type: ignore[valid-type]
    try:
        schema = TypeAdapter(annotation).json_schema(mode="validation", by_alias=True)
    except Exception as exc:  # a type with no JSON schema: record its name, compare by it
        return {"x-python-type": repr(annotation), "x-error": type(exc).__name__}
    return _normalize(schema, schema.get("$defs", {}))


def _default_of(info: Any) -> Any:
    """The JSON form of a field's default (writers leave defaults out: readers must agree)."""
    try:
        value = info.get_default(call_default_factory=True, validated_data={})
        return TypeAdapter(Any).dump_python(value, mode="json")
    except Exception:
        return {"x-unrepresentable-default": repr(info.default)}


def describe_message(model: type[BaseModel]) -> dict[str, Any]:
    """A JSON-able description of `model`'s wire schema, keyed by wire (serialized) name."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        wire = info.serialization_alias or info.alias or name
        fields[wire] = {
            "accepts": _accepted_names(name, info, model),
            "required": info.is_required(),
            "schema": _field_schema(info),
        }
        if not info.is_required():
            fields[wire]["default"] = _default_of(info)
    return {"class": f"{model.__module__}.{model.__qualname__}", "fields": fields}


def _short(node: Any) -> str:
    if isinstance(node, dict):
        for key in ("type", "enum", "anyOf", "$recursive", "x-python-type"):
            if key in node:
                return f"{key}={node[key]!r}"[:80]
    return repr(node)[:80]


def _default_problem(path: str, old: Any, new: Any) -> str:
    return (
        f"field {path!r}: default changed from {old!r} to {new!r}; writers leave defaults out, "
        "so old readers would read the old default"
    )


def _compare_nodes(old: Any, new: Any, path: str, out: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        if "default" in old or "default" in new:
            if "default" in old and "default" in new and old["default"] != new["default"]:
                out.append(_default_problem(path, old["default"], new["default"]))
            old = {k: v for k, v in old.items() if k != "default"}
            new = {k: v for k, v in new.items() if k != "default"}
            _compare_nodes(old, new, path, out)
            return
        if "enum" in old and "enum" in new:
            removed = [v for v in old["enum"] if v not in new["enum"]]
            if removed:
                out.append(f"field {path!r}: enum values {removed!r} were removed")
            rest_old = {k: v for k, v in old.items() if k != "enum"}
            rest_new = {k: v for k, v in new.items() if k != "enum"}
            _compare_nodes(rest_old, rest_new, path, out)
            return
        if "properties" in old and "properties" in new:
            _compare_properties(old, new, path, out)
            skip = {"properties", "required"}
            _compare_nodes(
                {k: v for k, v in old.items() if k not in skip},
                {k: v for k, v in new.items() if k not in skip},
                path,
                out,
            )
            return
        if set(old) != set(new):
            out.append(f"field {path!r}: type changed from {_short(old)} to {_short(new)}")
            return
        for key in old:
            sub = f"{path}[]" if key in ("items", "additionalProperties") else path
            _compare_nodes(old[key], new[key], sub, out)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for a, b in zip(old, new, strict=True):
            _compare_nodes(a, b, path, out)
        return
    out.append(f"field {path!r}: type changed from {_short(old)} to {_short(new)}")


def _compare_properties(
    old: dict[str, Any], new: dict[str, Any], path: str, out: list[str]
) -> None:
    old_props, new_props = old["properties"], new["properties"]
    old_req, new_req = set(old.get("required", ())), set(new.get("required", ()))
    for name in sorted(new_req - set(old_props)):
        out.append(f"field {path + '.' + name!r} was added without a default; give it one")
    for name in sorted(old_req - set(new_props)):
        out.append(f"field {path + '.' + name!r} was removed but old readers require it")
    for name in sorted(set(old_props) & set(new_props)):
        sub = f"{path}.{name}"
        if name in new_req and name not in old_req:
            out.append(f"field {sub!r} became required; old messages may lack it")
        _compare_nodes(old_props[name], new_props[name], sub, out)


def compare_descriptors(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every reason why `new` cannot replace `old` under the same version (empty: compatible)."""
    problems: list[str] = []
    old_fields: dict[str, Any] = old["fields"]
    new_fields: dict[str, Any] = new["fields"]
    # New readers reading old messages: each required new field must be carried by old ones.
    for wire, field in sorted(new_fields.items()):
        carriers = [w for w in old_fields if w in field["accepts"]]
        if not carriers:
            if field["required"]:
                problems.append(
                    f"field {wire!r} was added without a default; old messages lack it: "
                    "give it a default"
                )
            continue
        old_field = old_fields[carriers[0]]
        if field["required"] and not old_field["required"]:
            problems.append(f"field {wire!r} became required; old messages may lack it")
        if (
            "default" in field
            and "default" in old_field
            and field["default"] != old_field["default"]
        ):
            problems.append(_default_problem(wire, old_field["default"], field["default"]))
        _compare_nodes(old_field["schema"], field["schema"], wire, problems)
    # Old readers reading new messages: each required old field must still be written.
    for wire, field in sorted(old_fields.items()):
        if not field["required"]:
            continue
        if not any(w in field["accepts"] for w in new_fields):
            renamed = [w for w, f in new_fields.items() if wire in f["accepts"]]
            if renamed:
                problems.append(
                    f"field {wire!r} is now written as {renamed[0]!r}, which old readers do "
                    f"not know: keep the wire name with serialization_alias={wire!r}"
                )
            else:
                problems.append(
                    f"field {wire!r} was removed but old readers require it: keep it, "
                    "or bump the version and register an upcaster"
                )
    return problems
