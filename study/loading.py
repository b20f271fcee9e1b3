"""Reading study files: bounded YAML in, a validated :class:`study.config.StudyConfig` out, and back.

Input is bounded before it is parsed or echoed, so a hostile or mistaken file costs little and says one
line: at most :data:`MAX_FILE_BYTES` bytes; YAML anchors and aliases allowed, but a document that expands
to more than :data:`MAX_EXPANDED_NODES` nodes (an alias bomb) is refused; a key given twice in one mapping
is refused (PyYAML would silently keep the last); an error line is at most :data:`MAX_ERROR_CHARS`
characters, every value in it clipped (``reprlib``).  ``--set KEY=VALUE`` overrides take YAML values; an
empty value is refused (``--set epochs=null`` falls back to the default).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import StudyConfig, StudyConfigError
from .errors import clip_repr

__all__ = [
    "load_study",
    "parse_study",
    "parse_study_text",
    "apply_sets",
    "dump_study",
    "format_validation_error",
    "MAX_FILE_BYTES",
    "MAX_EXPANDED_NODES",
    "MAX_ERROR_CHARS",
]

MAX_FILE_BYTES = 1 << 20          # 1 MiB: a study file is a few KiB
MAX_EXPANDED_NODES = 100_000      # scalars + collections after expanding every alias
MAX_ERROR_CHARS = 1_000
class _StudyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys and documents that expand past the node limit."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                dup = key in seen
            except TypeError:  # an unhashable key: PyYAML's own error follows
                break
            if dup:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {clip_repr(key)} is given twice in one mapping (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, memo: dict[int, int]) -> int:
    """Nodes of the document with every alias expanded (memoised: cheap even for an alias bomb)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once on the way down
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[key] = size
    return size


def _load_yaml(text: str, source: str) -> Any:
    try:
        loader = _StudyLoader(text)  # reads the stream: a NUL or other non-printable character fails here
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"study file {source}: invalid YAML: {_yaml_message(exc)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_EXPANDED_NODES:
            raise StudyConfigError(f"study file {source}: expands to {size:,} YAML nodes through its aliases; at most "
                                   f"{MAX_EXPANDED_NODES:,} are allowed (an alias bomb?)")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"study file {source}: invalid YAML: {_yaml_message(exc)}") from None
    finally:
        loader.dispose()


def _yaml_message(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem:
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{problem}{where}"[:300]
    return str(exc).splitlines()[0][:300]


def _clip_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 5] + " ..."


def _field_path(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for item in loc:
        # pydantic puts union/validator tags in loc (e.g. 'function-before[...]'); skip those
        if isinstance(item, str) and ("[" in item or item in ("str", "list[str]")):
            continue
        if isinstance(item, int) and isinstance(node, list) and 0 <= item < len(node):
            entry = node[item]
            name = entry if isinstance(entry, str) else (entry.get("name") if isinstance(entry, dict) else None)
            parts.append(f"{item}" + (f" ({clip_repr(name)[1:-1] if isinstance(name, str) else name})" if name else ""))
            node = entry
            continue
        parts.append(clip_repr(item)[1:-1] if isinstance(item, str) else str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(file)"


#: A study-level rule's message that starts with the field it is about: "optimizers.0 (amgt).hparams.lr: ..."
_LEADING_FIELD = re.compile(r"^([A-Za-z_][\w.]*(?: \([^)]*\))?[\w.]*): (.*)$", re.S)


def _from_set(path: str, loc: tuple[Any, ...], sets: tuple[str, ...]) -> str:
    """``path`` with the ``--set`` override that gave the field at ``loc`` (``epoch (from --set epoch=5)``): the
    last one applied whose key is the field, a mapping above it (``--set search={...}``) or a key under it
    (``--set a.b=1`` when ``a`` is refused); ``path`` alone when none did."""
    raw = ".".join(str(p) for p in loc)
    for item in reversed(sets):
        key = item.partition("=")[0].strip()
        if raw == key or raw.startswith(key + ".") or key.startswith(raw + "."):
            return f"{path} (from --set {clip_repr(item)[1:-1]})"
    return path


def format_validation_error(exc: ValidationError, data: Any, source: str, sets: tuple[str, ...] = ()) -> str:
    """One line: ``study file SRC: field a.b: message; field c: message`` (values clipped, line bounded); a field
    that a ``--set`` override in ``sets`` gave names that override."""
    msgs = []
    for err in exc.errors():
        text = err["msg"]
        if text.startswith("Value error, "):
            text = text[len("Value error, "):]
        # a model's own rules (StudyConfig._problems) report every failing rule, one per line
        for msg in text.split("\n") if err["type"] == "value_error" else [text]:
            path = _field_path(tuple(err["loc"]), data)
            lead = _LEADING_FIELD.match(msg)
            if lead:  # "hparams.lr: ..." raised by a model's own rule: the field it names goes into the path
                path = lead.group(1) if path == "(file)" else f"{path}.{lead.group(1)}"
                msg = lead.group(2)
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            elif err["type"] == "missing":
                msg = "required field is missing"
            elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
                msg = f"{msg} (got {clip_repr(err['input'])})"
            msgs.append(f"field {_from_set(path, tuple(err['loc']), sets)}: {msg}")
    return _clip_line(f"study file {source}: " + "; ".join(msgs))


def parse_study(data: Any, source: str = "<study>", sets: tuple[str, ...] = (), **overrides: Any) -> StudyConfig:
    """Validate a study mapping (``overrides`` replace top-level fields, e.g. ``name``; ``sets``: the ``--set``
    overrides already applied, named in an error about a field they gave).

    Raises:
        StudyConfigError: one line naming every bad field.
    """
    if not isinstance(data, dict):
        raise StudyConfigError(f"study file {source}: expected a mapping of fields, got {type(data).__name__}")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise StudyConfigError(format_validation_error(exc, data, source, tuple(sets))) from None
    except StudyConfigError as exc:
        raise StudyConfigError(_clip_line(str(exc))) from None


def apply_sets(data: Any, sets: list[str] | tuple[str, ...], source: str) -> Any:
    """Apply ``KEY=VALUE`` overrides (``--set``): dotted keys into nested mappings, values parsed as YAML.

    Example: ``["epochs=5", "seeds=3", "search.trials_per_optimizer=4"]``.

    Raises:
        StudyConfigError: an override without ``=`` or without a value, or a dotted key through a non-mapping.
    """
    if not sets or not isinstance(data, dict):
        return data
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise StudyConfigError(f"--set {clip_repr(item)}: use KEY=VALUE, e.g. --set epochs=5")
        if not raw.strip():
            raise StudyConfigError(f"--set {key.strip()}=: no value given; give one (--set {key.strip()}=null "
                                   "falls back to the default)")
        if len(raw) > MAX_FILE_BYTES:
            raise StudyConfigError(f"--set {key.strip()}: the value is {len(raw):,} characters; at most "
                                   f"{MAX_FILE_BYTES:,} are allowed")
        try:
            value = _load_yaml(raw, f"--set {key.strip()}")
        except StudyConfigError:
            value = raw
        node = data
        parts = key.strip().split(".")
        if not all(p.strip() for p in parts):
            raise StudyConfigError(f"--set {clip_repr(item)[1:-1]}: an empty part in the key {clip_repr(key.strip())}; "
                                   "use dotted field names, e.g. --set search.trials_per_optimizer=4")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise StudyConfigError(f"study file {source}: --set {key}: {part!r} is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return data


def parse_study_text(text: str, source: str, sets: list[str] | tuple[str, ...] = (), **overrides: Any) -> StudyConfig:
    """Validate a study file's text (YAML), bounded as the module docstring says."""
    if len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise StudyConfigError(f"study file {source}: {len(text.encode('utf-8', 'replace')):,} bytes; at most "
                               f"{MAX_FILE_BYTES:,} are allowed")
    data = _load_yaml(text, source)
    if data is None:
        raise StudyConfigError(f"study file {source}: the file is empty; expected a mapping of fields "
                               "(name, kind, benchmark, optimizers, ...)")
    for key, value in overrides.items():  # e.g. `--name x --set name=y`: one of them would be dropped silently
        given = [s for s in sets if s.partition("=")[0].strip().split(".")[0] == key]
        if value is not None and given:
            raise StudyConfigError(f"--{key.replace('_', '-')} {clip_repr(value)[1:-1]} and --set "
                                   f"{clip_repr(given[-1])[1:-1]} both give field {key}: give one")
    return parse_study(apply_sets(data, sets, source), source, tuple(sets), **overrides)


def load_study(path: str | Path, sets: list[str] | tuple[str, ...] = (), **overrides: Any) -> StudyConfig:
    """Read and validate a study file (YAML); ``sets`` are ``KEY=VALUE`` overrides (see :func:`apply_sets`).

    Raises:
        StudyConfigError: missing/unreadable/oversized file, invalid YAML, or an invalid field (one line each).
    """
    p = Path(path)
    if not p.is_file():
        raise StudyConfigError(f"study file {path}: not found")
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise StudyConfigError(f"study file {path}: {size:,} bytes; at most {MAX_FILE_BYTES:,} are allowed")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyConfigError(f"study file {path}: cannot be read as UTF-8 text ({exc})") from None
    return parse_study_text(text, str(path), sets, **overrides)


def dump_study(cfg: StudyConfig) -> str:
    """The validated study as YAML (defaults filled in), for the parent run and the study's record."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
