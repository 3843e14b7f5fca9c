from pydantic import BaseModel, Field
from src.services.payment import PaymentAPI
from usvc_core import CircuitOpenError, JobContext, action
from usvc_http.rest import TransportError


class PayInput(BaseModel):
    amount: float = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class PayOutput(BaseModel):
    charge_id: str
    amount: float
    currency: str


# While the provider is down (circuit open, no connection) the job is tried again later.
# TransportError is httpx.TransportError without importing httpx before the first charge.
@action("pay", retry_on=(CircuitOpenError, TransportError))
async def handle(input: PayInput, payments: PaymentAPI, job: JobContext) -> PayOutput:
    # The job id stays the same on every attempt of this job, so the provider sees the
    # same key when the job runs again and charges once.
    charge = await payments.charge(input.amount, input.currency, idempotency_key=job.job_id)
    return PayOutput(charge_id=charge["id"], amount=charge["amount"], currency=charge["currency"])
