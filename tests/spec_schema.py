"""Validate HTTP responses against the Matrix client-server OpenAPI description.

The spec checkout lives in a ``shared`` directory beside the repository checkout
(``<parent>/shared/matrix-spec``), or where ``VECHE_SPEC_DIR`` points. A missing checkout
is an error, not an empty spec: with no operations loaded every lookup would fail and the
callers, which skip undocumented paths, would silently validate nothing.

Usage::

    from tests.spec_schema import validate_response
    validate_response("GET", "/_matrix/client/v3/sync?since=s1", 200, body)

``validate_response`` raises ``LookupError`` if no documented operation matches the
method and path, and ``AssertionError`` (with a readable message) if the status code
is undocumented or the body does not satisfy the response's JSON schema.

Schemas are validated with JSON Schema draft 2020-12 (the dialect of OpenAPI 3.1).
``$ref``s are resolved lazily across files through a ``referencing`` registry whose
retrieval reads YAML/JSON files from the spec checkout, so references into
``data/event-schemas`` or ``data/schemas`` work. Unknown keywords (``x-*``,
``example``, ``format`` values like ``mx-user-id``) are annotations only.

Error statuses (>= 400) that an operation does not document are validated against
the generic ``definitions/errors/error.yaml`` schema: the spec allows every endpoint
to return the standard errors.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

SPEC_ROOT = Path(
    os.environ.get("VECHE_SPEC_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "matrix-spec"
)
DATA_DIR = SPEC_ROOT / "data"
CS_API_DIR = DATA_DIR / "api" / "client-server"
ERROR_SCHEMA_FILE = CS_API_DIR / "definitions" / "errors" / "error.yaml"

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_PARAM_RE = re.compile(r"\{([^}/]+)\}")


# --------------------------------------------------------------------------- loading


@functools.cache
def _load_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _uri_to_path(uri: str) -> Path:
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme != "file":
        raise NoSuchResource(ref=uri)
    return Path(urllib.parse.unquote(parsed.path))


def _path_to_uri(path: Path) -> str:
    return "file://" + urllib.parse.quote(str(path.resolve()), safe="/$")


def _retrieve(uri: str) -> Resource[Any]:
    path = _uri_to_path(uri)
    if not path.is_file():
        raise NoSuchResource(ref=uri)
    return DRAFT202012.create_resource(_load_file(path))


@functools.cache
def _registry() -> Registry[Any]:
    return Registry(retrieve=_retrieve)


def _pointer_escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _resolve_local(doc_path: Path, node: Any, pointer: str = "") -> tuple[Path, Any]:
    """Follow an OpenAPI-level ``$ref`` (response / example / parameter objects)."""
    doc_path, node, _ = _resolve_with_pointer(doc_path, node, pointer)
    return doc_path, node


def _follow_once(doc_path: Path, ref: str) -> tuple[Path, Any]:
    file_part, _, fragment = ref.partition("#")
    target_path = (doc_path.parent / file_part).resolve() if file_part else doc_path
    target: Any = _load_file(target_path)
    for seg in [s for s in fragment.split("/") if s]:
        seg = urllib.parse.unquote(seg).replace("~1", "/").replace("~0", "~")
        target = target[int(seg)] if isinstance(target, list) else target[seg]
    return target_path, target


def _resolve_with_pointer(doc_path: Path, node: Any, pointer: str) -> tuple[Path, Any, str]:
    """Like ``_resolve_local`` but also returns the JSON pointer of the final node."""
    hops = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        hops += 1
        if hops > 32:
            raise RuntimeError(f"$ref loop in {doc_path}")
        ref: str = node["$ref"]
        doc_path, node = _follow_once(doc_path, ref)
        pointer = ref.partition("#")[2].rstrip("/")
    return doc_path, node, pointer


def resolve_example(doc_path: Path, value: Any) -> Any:
    """Resolve the ``$ref``s the spec uses inside examples.

    An example object ``{"$ref": "file", **siblings}`` means the referenced example
    with the sibling keys overriding its top-level keys.
    """
    if isinstance(value, list):
        return [resolve_example(doc_path, v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$ref" in value and isinstance(value["$ref"], str):
        ref_path, base = _follow_once(doc_path, value["$ref"])
        merged = copy.deepcopy(resolve_example(ref_path, base))
        if not isinstance(merged, dict):
            merged = {}
        for k, v in value.items():
            if k != "$ref":
                merged[k] = resolve_example(doc_path, v)
        return merged
    return {k: resolve_example(doc_path, v) for k, v in value.items()}


# --------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    template: str  # full path template, base path included
    file: Path
    pointer: str  # JSON pointer to the operation object within ``file``
    regex: re.Pattern[str]
    literal_segments: int

    @property
    def spec(self) -> dict[str, Any]:
        node: Any = _load_file(self.file)
        for seg in self.pointer.strip("/").split("/"):
            node = node[seg.replace("~1", "/").replace("~0", "~")]
        assert isinstance(node, dict)
        return node


def _base_paths(doc: dict[str, Any]) -> list[str]:
    bases: list[str] = []
    for server in doc.get("servers") or [{"url": ""}]:
        url: str = server.get("url", "")
        variables: dict[str, Any] = server.get("variables") or {}
        options: list[str] = []
        base_var = variables.get("basePath")
        if base_var is not None:
            options = [base_var.get("default", "")] + [
                v for v in base_var.get("enum", []) if v != base_var.get("default")
            ]
        if "{basePath}" in url:
            bases.extend(options or [""])
        else:
            parsed = urllib.parse.urlsplit(url)
            bases.append(parsed.path.rstrip("/"))
    return bases or [""]


def _compile_template(template: str) -> tuple[re.Pattern[str], int]:
    parts = []
    literal = 0
    for segment in template.split("/"):
        pieces = _PARAM_RE.split(segment)
        seg_re = ""
        for i, piece in enumerate(pieces):
            if i % 2:
                seg_re += "[^/]*"
            else:
                seg_re += re.escape(piece)
        if not _PARAM_RE.search(segment):
            literal += 1
        parts.append(seg_re)
    pattern = "/".join(parts)
    if template.endswith("/{stateKey}"):
        # "When an empty string, the trailing slash on this endpoint is optional."
        pattern = pattern[: -len("/[^/]*")] + "(?:/[^/]*)?"
    return re.compile(pattern + r"\Z"), literal


@functools.cache
def _operations() -> tuple[Operation, ...]:
    if not CS_API_DIR.is_dir():
        raise FileNotFoundError(
            f"the Matrix spec is not at {SPEC_ROOT}: put the checkout in ../shared beside the "
            "repository or set VECHE_SPEC_DIR"
        )
    ops: list[Operation] = []
    for path in sorted(CS_API_DIR.glob("*.yaml")):
        doc = _load_file(path)
        if not isinstance(doc, dict) or "paths" not in doc:
            continue
        bases = _base_paths(doc)
        for tmpl, item in (doc.get("paths") or {}).items():
            if not isinstance(item, dict):
                continue
            for method in HTTP_METHODS:
                if method not in item:
                    continue
                pointer = f"/paths/{_pointer_escape(tmpl)}/{method}"
                for base in bases:
                    full = base + tmpl
                    regex, literal = _compile_template(full)
                    ops.append(Operation(method.upper(), full, path.resolve(), pointer, regex,
                                         literal))
    return tuple(ops)


def iter_operations() -> Iterator[tuple[str, str]]:
    """Every documented (METHOD, full path template) pair, e.g. ("GET", "/_matrix/client/v3/sync")."""
    seen: set[tuple[str, str]] = set()
    for op in _operations():
        key = (op.method, op.template)
        if key not in seen:
            seen.add(key)
            yield key


def find_operation(method: str, path: str) -> Operation:
    """The operation documenting ``method`` on the concrete request ``path``.

    ``path`` may carry a query string and must be the raw (still percent-encoded)
    request path. When several templates match, the one with the most literal
    segments wins (``/rooms/{roomId}/members`` over ``/rooms/{roomId}/{x}``).
    """
    method = method.upper()
    raw_path = urllib.parse.urlsplit(path).path if "?" in path or "#" in path else path
    candidates = [op for op in _operations() if op.regex.match(raw_path)]
    same_method = [op for op in candidates if op.method == method]
    if not same_method:
        if candidates:
            allowed = sorted({op.method for op in candidates})
            raise LookupError(f"{method} {raw_path}: path documented only for {allowed}")
        raise LookupError(f"{method} {raw_path}: no documented client-server operation matches")
    same_method.sort(key=lambda op: (-op.literal_segments, op.template.count("{")))
    return same_method[0]


# --------------------------------------------------------------------------- validation


def _status_entry(responses: dict[str, Any], status: int) -> tuple[str, Any] | None:
    if str(status) in responses:
        return str(status), responses[str(status)]
    wildcard = f"{status // 100}XX"
    for key in (wildcard, wildcard.lower()):
        if key in responses:
            return key, responses[key]
    if "default" in responses:
        return "default", responses["default"]
    return None


def _json_media(content: dict[str, Any]) -> tuple[str, Any] | None:
    for media_type, media in content.items():
        if media_type == "application/json" or media_type.endswith("+json"):
            return media_type, media
    return None


def _format_error(err: jsonschema.ValidationError, limit: int = 300) -> str:
    where = "/".join(str(p) for p in err.absolute_path) or "<root>"
    instance = json.dumps(err.instance, default=str)
    if len(instance) > limit:
        instance = instance[:limit] + "..."
    return f"at {where}: {err.message[:limit]} (schema path {'/'.join(map(str, err.absolute_schema_path))}; value {instance})"


def _validate_against(schema_ref: str, body: Any, what: str) -> None:
    validator = jsonschema.Draft202012Validator({"$ref": schema_ref}, registry=_registry())
    # Some spec schemas say oneOf where a branch is an unconstrained object (e.g. GET
    # /state/{type}/{key}: content or ClientEvent), so a full event matches two branches.
    # Matching more than one branch is what the spec means by valid there.
    errors = sorted(
        (e for e in validator.iter_errors(body)
         if not (e.validator == "oneOf" and "is valid under each of" in e.message)),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    if errors:
        details = "\n  ".join(_format_error(e) for e in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise AssertionError(f"{what}: body does not match the spec schema:\n  {details}{more}")


def response_schema_ref(op: Operation, status: int) -> str | None:
    """A ``$ref`` URI to the JSON schema of ``op``'s response ``status`` (None if no JSON body)."""
    responses: dict[str, Any] = op.spec.get("responses") or {}
    entry = _status_entry(responses, status)
    if entry is None:
        if status >= 400:
            return _path_to_uri(ERROR_SCHEMA_FILE)
        documented = sorted(responses)
        raise AssertionError(f"{op.method} {op.template}: status {status} is not documented "
                             f"(documented: {documented})")
    key, response = entry
    doc_path, response, pointer = _resolve_with_pointer(
        op.file, response, f"{op.pointer}/responses/{_pointer_escape(key)}")
    media = _json_media((response or {}).get("content") or {})
    if media is None:
        return None
    media_type, media_obj = media
    if "schema" not in media_obj:
        return None
    return (_path_to_uri(doc_path) + "#" + pointer + "/content/" + _pointer_escape(media_type)
            + "/schema")


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """Check ``body`` against the documented response for ``method path`` -> ``status``.

    Raises LookupError when no operation matches, AssertionError on any mismatch.
    A ``None`` or ``bytes`` body is accepted for responses that document no JSON body.
    """
    op = find_operation(method, path)
    ref = response_schema_ref(op, status)
    what = f"{op.method} {op.template} -> {status}"
    if ref is None:
        if body is None or isinstance(body, (bytes, bytearray, str)):
            return
        raise AssertionError(f"{what}: the spec documents no JSON body, got {type(body).__name__}")
    _validate_against(ref, body, what)


# --------------------------------------------------------------------------- examples


def iter_response_examples() -> Iterator[tuple[str, str, str, str, Any]]:
    """Yield (method, template, status, example name, resolved example) for every JSON
    response example in the client-server API (``examples`` on the media object, or
    ``example`` on it), with example ``$ref``s resolved."""
    seen: set[tuple[str, str]] = set()
    for op in _operations():
        if (op.method, op.pointer + str(op.file)) in seen:
            continue
        seen.add((op.method, op.pointer + str(op.file)))
        for status, response in (op.spec.get("responses") or {}).items():
            doc_path, resp = _resolve_local(op.file, response)
            media = _json_media((resp or {}).get("content") or {})
            if media is None:
                continue
            _, media_obj = media
            examples = dict(media_obj.get("examples") or {})
            if "example" in media_obj:
                examples["example"] = {"value": media_obj["example"]}
            for name, example in examples.items():
                ex_path, ex = _resolve_local(doc_path, example)
                if not isinstance(ex, dict) or "value" not in ex:
                    continue
                yield op.method, op.template, str(status), name, resolve_example(ex_path,
                                                                                 ex["value"])


def concrete_path(template: str) -> str:
    """Fill a path template with plausible values (for tests)."""
    samples = {"roomId": "!room:example.org", "userId": "@alice:example.org",
               "eventId": "$event:example.org", "roomIdOrAlias": "!room:example.org",
               "roomAlias": "#room:example.org", "serverName": "example.org"}
    return _PARAM_RE.sub(lambda m: urllib.parse.quote(samples.get(m.group(1), "x" + m.group(1)),
                                                      safe="!@$:"), template)
