from pydantic import BaseModel
from usvc_core import action


class GreetInput(BaseModel):
    name: str


@action("greet")
async def handle(input: GreetInput) -> dict[str, str]:
    return {"message": f"Hello, {input.name}!"}
