"""A test-only service whose one action kills its own process: a poison job."""

from usvc_core import Application

app = Application()
app.run()
