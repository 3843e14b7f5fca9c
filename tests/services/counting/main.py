"""A test-only service: the greeting example's shape, with an action that records each run."""

from usvc_core import Application

app = Application()
app.run()
