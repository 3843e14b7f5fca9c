"""``python -m usvc_oracle ddl|apply``: print or create the queue table and its indexes."""

from __future__ import annotations

from usvc_oracle.cli import main

raise SystemExit(main())
