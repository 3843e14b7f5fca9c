"""``typed``: a handler with a strict input model, for the wrong-field-type inputs."""

from pydantic import BaseModel
from usvc_core import action


class TypedInput(BaseModel):
    count: int
    label: str
    tags: list[str] = []


class TypedOutput(BaseModel):
    count: int
    label_length: int
    tags: int


@action("typed")
async def handle(input: TypedInput) -> TypedOutput:
    return TypedOutput(count=input.count, label_length=len(input.label), tags=len(input.tags))
