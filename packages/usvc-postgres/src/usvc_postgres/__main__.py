"""``python -m usvc_postgres ddl|apply|check``: the queue table and its indexes."""

from __future__ import annotations

from usvc_postgres.cli import main

raise SystemExit(main())
