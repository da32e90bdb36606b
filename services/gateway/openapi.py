"""OpenAPI 3 document built from the route table and the marshmallow schemas (apispec)."""
from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

_CACHE: dict[int, dict[str, Any]] = {}
ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                          "errors": {"type": "object", "additionalProperties": True}}}


# What contract.inbound.Text accepts: no NUL or C0/C1 control characters (tab and newlines allowed), so that a
# generated "valid" string is one the API really takes. (Lone surrogates, also refused, cannot be written in a
# pattern every JSON Schema tool reads; valid JSON text never carries them unpaired in practice.)
TEXT_PATTERN = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"


def _text_rule(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    from services.common.contract.inbound import Text

    if isinstance(field, Text) and "pattern" not in ret:
        return {"pattern": TEXT_PATTERN}
    return {}


def _path(werkzeug_path: str) -> tuple[str, list[str]]:
    names = re.findall(r"<(?:\w+:)?(\w+)>", werkzeug_path)
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", werkzeug_path), names


def openapi_document(routes: list[Any]) -> dict[str, Any]:
    key = len(routes)
    if key in _CACHE:
        return _CACHE[key]
    plugin = MarshmallowPlugin()
    spec = APISpec(title="Property service requests API", version="1.0.0", openapi_version="3.0.3",
                   plugins=[plugin],
                   servers=[{"url": "http://127.0.0.1:8000"}])
    assert plugin.converter is not None  # set by APISpec when the plugin is registered
    plugin.converter.add_attribute_function(_text_rule)
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    spec.components.schema("Error", ERROR)
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        path, params = _path(r.path)
        op: dict[str, Any] = {"operationId": r.name, "summary": r.summary, "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 40}} for p in params
        ], "responses": {str(r.ok_status): {"description": "OK", "content": {
            ctype: {"schema": {"type": "object"} if ctype == "application/json" else {"type": "string"}}
            for ctype in r.content_types}}}}
        if r.scope:
            op["security"] = [{"apiKey": []}]
            op["description"] = f"Requires the `{r.scope}` scope."
            for status, text in (("401", "No, a wrong or a revoked API key"), ("403", f"The key lacks `{r.scope}`"),
                                 ("429", "Rate limit exceeded"), ("503", "A service did not answer in time")):
                op["responses"][status] = {"description": text, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": r.body}}}
            for status, text in (("400", "Malformed JSON"), ("413", "Body too large"),
                                 ("415", "Not application/json"), ("422", "Invalid fields, each named")):
                op["responses"][status] = {"description": text, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}
        if r.query is not None:
            op["parameters"].append({"in": "query", "schema": r.query})
            op["responses"]["400"] = {"description": "Invalid query", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
        if params:
            op["responses"]["404"] = {"description": "Not found", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
        # Any other refusal (400 bad query, 404 unknown path value, 409 wrong state, 411, 413...) has this shape.
        op["responses"]["default"] = {"description": "An error, naming the fields at fault", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        paths.setdefault(path, {})[r.method.lower()] = op
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
    _CACHE[key] = spec.to_dict()
    return _CACHE[key]
