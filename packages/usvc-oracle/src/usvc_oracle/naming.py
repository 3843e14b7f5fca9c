"""The queue table's name: validated once, then quoted into every statement.

Identifiers cannot be bind variables, so ``ORACLE_TABLE`` is the only text ever put into SQL
that did not come from this package. It must be an ASCII Oracle nonquoted identifier
(``TABLE`` or ``SCHEMA.TABLE``); it is upper-cased and double-quoted, so ``micro_svc`` and
``MICRO_SVC`` name the same table, and nothing else (quotes, ``;``, spaces, comments) can pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_NAME_LENGTH", "TableName"]

#: The base name is capped so that derived names (``<T>_READY_IX``) stay within 128 bytes.
MAX_NAME_LENGTH = 100
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_$#]*")


def _check_part(part: str, what: str, raw: str) -> str:
    if not part:
        raise ValueError(f"{raw!r}: the {what} name is empty")
    if len(part) > MAX_NAME_LENGTH:
        raise ValueError(f"{raw!r}: the {what} name is longer than {MAX_NAME_LENGTH} characters")
    if not _IDENT.fullmatch(part):
        raise ValueError(
            f"{raw!r} is not a plain Oracle name; use letters, digits, "
            "_, $ and # only, starting with a letter (no quotes, spaces, ';' or comments)"
        )
    return part.upper()


@dataclass(frozen=True, slots=True)
class TableName:
    """A validated ``TABLE`` or ``SCHEMA.TABLE``, upper-cased."""

    table: str
    schema: str | None = None

    @classmethod
    def parse(cls, raw: str) -> TableName:
        """Validate ``raw``; raise ValueError with a message that says what is wrong."""
        parts = raw.split(".")
        if len(parts) > 2:
            raise ValueError(f"{raw!r}: use TABLE or SCHEMA.TABLE (at most one dot)")
        if len(parts) == 2:
            return cls(
                table=_check_part(parts[1], "table", raw),
                schema=_check_part(parts[0], "schema", raw),
            )
        return cls(table=_check_part(parts[0], "table", raw))

    def _qualify(self, name: str) -> str:
        quoted = f'"{name}"'
        return f'"{self.schema}".{quoted}' if self.schema else quoted

    @property
    def quoted(self) -> str:
        """The table as it appears in SQL: ``"MICRO_SVC"`` or ``"APP"."MICRO_SVC"``."""
        return self._qualify(self.table)

    def object_name(self, suffix: str) -> str:
        """An unqualified derived name (constraints, index hints): ``"MICRO_SVC_PK"``."""
        return f'"{self.table}_{suffix}"'

    def qualified_object(self, suffix: str) -> str:
        """A derived schema object (indexes) in the table's schema."""
        return self._qualify(f"{self.table}_{suffix}")

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table
