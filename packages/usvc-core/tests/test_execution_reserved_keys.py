"""The reserved payload keys (``action``, ``_trace``) never reach an input model, whether the
payload is read as it is (a model that ignores extra keys) or copied without them first
(every model that could see them)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, RootModel, model_validator
from usvc_core import action
from usvc_testing import run_action

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
PAYLOAD = {"action": "", "n": 1, "_trace": TRACE}


class Plain(BaseModel):
    n: int


class KeepsExtra(BaseModel):
    model_config = ConfigDict(extra="allow")
    n: int


class ForbidsExtra(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int


class SeesRawInput(BaseModel):
    n: int
    keys: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _record_keys(cls, data: Any) -> Any:
        return {**data, "keys": sorted(data)}


class FieldNamedAction(BaseModel):
    n: int
    action: str = "unset"


class AliasedToTrace(BaseModel):
    n: int
    trace: Any = Field(default=None, validation_alias=AliasChoices("_trace", "trace"))


class Numbers(RootModel[dict[str, int]]):
    pass


def _handler(model: type[BaseModel], name: str) -> Any:
    async def handle(input: BaseModel) -> dict[str, Any]:
        return input.model_dump(mode="json")

    handle.__annotations__ = {"input": model, "return": dict[str, Any]}
    return action(name)(handle)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (Plain, {"n": 1}),
        (KeepsExtra, {"n": 1}),
        (ForbidsExtra, {"n": 1}),
        (SeesRawInput, {"n": 1, "keys": ["n"]}),
        (FieldNamedAction, {"n": 1, "action": "unset"}),
        (AliasedToTrace, {"n": 1, "trace": None}),
        (Numbers, {"n": 1}),
    ],
)
async def test_input_model_never_sees_reserved_keys(
    model: type[BaseModel], expected: dict[str, Any]
) -> None:
    name = f"reserved-{model.__name__.lower()}"
    for _ in range(2):  # the second job reads the payload the way the first one decided
        result = await run_action(_handler(model, name), {**PAYLOAD, "action": name})
        assert result.ok, result.error_message
        assert result.results == expected


async def test_payload_is_left_as_it_was() -> None:
    payload = {**PAYLOAD, "action": "reserved-plain-untouched"}
    seen = dict(payload)
    result = await run_action(_handler(Plain, "reserved-plain-untouched"), payload)
    assert result.ok
    assert payload == seen


class Strict(BaseModel):
    model_config = ConfigDict(strict=True)
    n: int


async def test_validation_errors_read_the_same() -> None:
    payload = {"action": "reserved-strict", "n": "1"}
    result = await run_action(_handler(Strict, "reserved-strict"), payload)
    assert result.error_code == "VALIDATION_ERROR"
    assert result.error_message == "invalid input: n: Input should be a valid integer"
