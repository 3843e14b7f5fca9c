"""``python -m usvc_core.cli``: the ``usvc`` command."""

from usvc_core.cli.main import main

__all__: list[str] = []

raise SystemExit(main())
