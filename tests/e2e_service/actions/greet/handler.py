from pydantic import BaseModel
from usvc_core import action


class GreetInput(BaseModel):
    name: str


class GreetOutput(BaseModel):
    message: str


@action("greet")
async def handle(input: GreetInput) -> GreetOutput:
    return GreetOutput(message=f"Hello, {input.name}!")
