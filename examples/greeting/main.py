from usvc_core import Application

app = Application()
app.run()
