"""A test-only service for the dashboard's browser test."""

from usvc_core import Application

app = Application()
app.run()
