"""The reliability suites' test service: the kit as a user runs it (``python main.py``).

Actions live next to this file, so the suites can start it from any working directory
(their logs then stay in the test's temporary directory).
"""

from pathlib import Path

from usvc_core import Application

Application(actions_dir=Path(__file__).resolve().parent / "actions").run()
