"""A test-only service: a periodic action (schedule from SCHEDULES) and a limited one."""

from usvc_core import Application

app = Application()
app.run()
