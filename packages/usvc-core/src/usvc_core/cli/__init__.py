"""The ``usvc`` command: operate a service's job queue from a shell (``usvc --help``).

It reads the service's own settings (environment, ``.env``), builds the queue through the
plugin loader, and uses only the ports (:class:`~usvc_core.ports.QueueAdmin` and
:class:`~usvc_core.ports.JobQueue`), so it works with every queue adapter.
"""

from usvc_core.cli.exitcodes import CliError, ExitCode
from usvc_core.cli.main import main, run

__all__ = ["CliError", "ExitCode", "main", "run"]
