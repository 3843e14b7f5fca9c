"""A test service: the kit as a user runs it, with a few actions that tests need."""

from usvc_core import Application

Application(actions_dir="actions").run()
