"""The client's result types say what the API returns: each one matches the service's response
model of the same name, and real answers fit them."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from hpsearch import api_types, studies
from hpsearch.client import Client
from hpsearch.db.storage import open_storage
from hpsearch.service import Settings, create_app

# Each typed method of the client, and the route it calls.
ROUTES = {
    "health": ("get", "/healthz"),
    "create_study": ("post", "/studies"),
    "list_studies": ("get", "/studies"),
    "study": ("get", "/studies/{name}"),
    "update_study": ("patch", "/studies/{name}"),
    "stop": ("post", "/studies/{name}/stop"),
    "resume": ("post", "/studies/{name}/resume"),
    "spec": ("get", "/studies/{name}/spec"),
    "set_pruner": ("put", "/studies/{name}/pruner"),
    "enqueue": ("post", "/studies/{name}/enqueue"),
    "trials": ("get", "/studies/{name}/trials"),
    "trial": ("get", "/studies/{name}/trials/{number}"),
    "best": ("get", "/studies/{name}/best"),
    "pareto": ("get", "/studies/{name}/pareto"),
    "prune": ("post", "/studies/{name}/trials/{number}/prune"),
    "importance": ("get", "/studies/{name}/importance"),
    "report": ("get", "/studies/{name}/report"),
    "workers": ("get", "/workers"),
    "spaces": ("get", "/spaces"),
    "space": ("get", "/spaces/{name}"),
}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi')}/s.db"
    return create_app(Settings(storage=url, anonymous_reads=True)).openapi()


def _shape(schema: Any) -> Any:
    """A JSON schema reduced to what a value looks like: types, keys, enums and references by
    name; titles, descriptions, defaults, bounds and formats dropped."""
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return ("ref", schema["$ref"].rsplit("/", 1)[1])
    if "anyOf" in schema:
        return ("any", frozenset(_shape(s) for s in schema["anyOf"]))
    if "enum" in schema or "const" in schema:
        return ("enum", frozenset(schema.get("enum", [schema.get("const")])))
    kind = schema.get("type")
    if kind == "array":
        return ("array", _shape(schema.get("items", {})))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", {})
        extra = True if extra == {} else extra
        return (
            "object",
            tuple(sorted((k, _shape(v)) for k, v in props.items())),
            _shape(extra) if props == {} else None,
        )
    return kind or "any"


def _typed_dict_schemas() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in api_types.__all__:
        schema = TypeAdapter(getattr(api_types, name)).json_schema(
            mode="serialization", ref_template="#/components/schemas/{model}"
        )
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    return found


def test_each_type_has_the_keys_and_value_types_of_the_api_model(openapi):
    api = openapi["components"]["schemas"]
    mine = _typed_dict_schemas()
    for name, schema in mine.items():
        assert name in api, f"api_types.{name} mirrors no response model of the API"
        assert _shape(schema) == _shape(api[name]), name
        # The service sends every field, defaults too: every key of the type is required.
        assert set(schema["required"]) == set(schema["properties"]), name


def test_each_method_returns_the_type_of_its_routes_answer(openapi):
    for method, (verb, path) in ROUTES.items():
        answers = openapi["paths"][path][verb]["responses"]
        (ok,) = [a for code, a in answers.items() if code.startswith("2")]
        model = ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        returned = typing.get_type_hints(getattr(Client, method))["return"]
        assert returned is getattr(api_types, model), (method, returned, model)
    untyped = [
        name
        for name, fn in vars(Client).items()
        if callable(fn)
        and not name.startswith("_")
        and typing.get_type_hints(fn).get("return") in (dict[str, Any], Any)
    ]
    assert untyped == []


def test_real_answers_fit_the_types(sqlite_url):
    url = sqlite_url
    storage = open_storage(url)
    studies.create_study(storage, {"name": "s", "space": "demo", "budget": {"trials": 4}})
    assert studies.enqueue_configs(storage, "s", [{"optim.lr": 0.01}]) == 1  # trial 0, waiting
    with TestClient(create_app(Settings(storage=url, anonymous_reads=True))) as client:
        answers: dict[type, Any] = {
            api_types.StudyStatus: client.get("/studies/s"),
            api_types.StudiesPublic: client.get("/studies"),
            api_types.StudySpec: client.get("/studies/s/spec"),
            api_types.TrialsPublic: client.get("/studies/s/trials"),
            api_types.TrialRecord: client.get("/studies/s/trials/0"),
            api_types.SpacesPublic: client.get("/spaces"),
            api_types.SearchSpace: client.get("/spaces/demo"),
            api_types.WorkersPublic: client.get("/workers?all=true"),
            api_types.Health: client.get("/healthz"),
        }
        for kind, answer in answers.items():
            assert answer.status_code == 200, answer.text
            body = answer.json()
            TypeAdapter(kind).validate_python(body, strict=False)
            assert set(body) == set(typing.get_type_hints(kind)), kind.__name__
