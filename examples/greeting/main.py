from src.services.payment import PaymentAPI
from usvc_core import Application

app = Application()
app.register_service(PaymentAPI)
app.run()
