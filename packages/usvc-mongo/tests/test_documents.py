"""The registry's documents: BSON-safe health details, write-once schema content."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

from usvc_core.health import Status
from usvc_core.ports import ActionSchema, ServiceDescription
from usvc_mongo.documents import (
    bson_safe,
    description_from_document,
    schema_content,
    schema_fingerprint,
)

GREET = ActionSchema(
    "greet",
    {"type": "object", "$defs": {"N": {"type": "string"}}, "properties": {"name": {}}},
    {"type": "object"},
)
PING = ActionSchema("ping", {"type": "object"}, None)


class _Color(Enum):
    RED = "r"


def test_bson_safe_makes_field_names_and_values_storable() -> None:
    """Dots and leading $ leave keys, enums become names, odd values become strings."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    value = {
        "a.b": {"$x": Status.GREEN, "when": when},
        "items": ([1, 2], (3,)),
        "tags": {"x"},
        "big": 2**70,
        "color": _Color.RED,
        "obj": object,
    }
    safe = bson_safe(value)
    assert safe["a_b"] == {"_x": "GREEN", "when": when}
    assert safe["items"] == [[1, 2], [3]]
    assert safe["tags"] == ["x"]
    assert safe["big"] == str(2**70)
    assert safe["color"] == "RED"
    assert safe["obj"] == str(object)


def test_schema_content_round_trips_to_a_description() -> None:
    """JSON Schemas (with $defs) are stored as JSON text and read back unchanged."""
    description = ServiceDescription("svc", "1.0.0", [PING, GREET])
    doc = {"service": "svc", "version": "1.0.0", **schema_content(description, datetime.now(UTC))}
    assert [a["name"] for a in doc["actions"]] == ["greet", "ping"]
    assert isinstance(doc["actions"][0]["input_schema"], str)
    back = description_from_document(doc)
    assert {a.name: a for a in back.actions} == {"greet": GREET, "ping": PING}


def test_fingerprint_ignores_action_order_and_sees_schema_changes() -> None:
    """The same actions in another order hash the same; a changed schema does not."""
    one = schema_fingerprint(ServiceDescription("s", "1", [GREET, PING]))
    same = schema_fingerprint(ServiceDescription("s", "1", [PING, GREET]))
    changed = schema_fingerprint(
        ServiceDescription("s", "1", [PING, ActionSchema("greet", {"type": "string"}, None)])
    )
    assert one == same
    assert one != changed
