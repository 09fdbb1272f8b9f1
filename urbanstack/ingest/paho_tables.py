"""One set of MQTT 5 property tables for every paho ``Properties`` object.

paho-mqtt builds three lookup tables (property names, identifiers and kinds) in
``Properties.__init__``, and ``Properties.clear`` walks all 27 names; both run for every
PUBLISH an MQTT 5 client receives. Profiled on the ingestion benchmark (``py-spy record
--gil``) that was a third of the server's interpreter time. The tables never change, so
:func:`share_property_tables` gives every instance the same ones and makes ``clear``
delete only the properties an object holds. Behaviour is otherwise paho's own: unknown
names and out-of-range values still raise, and instances never share property values.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

#: instance attributes paho keeps beside the properties themselves
_TABLE_ATTRIBUTES = ("packetType", "types", "names", "properties")


def share_property_tables() -> bool:
    """Patch ``Properties`` once per process; False (and no change) if paho's class no
    longer looks as expected, so a future paho keeps working, only slower."""
    if getattr(Properties.__init__, "shares_tables", False):
        return True
    template = Properties(PacketTypes.PUBLISH)
    state = vars(template)
    if set(state) != set(_TABLE_ATTRIBUTES) or not callable(getattr(Properties, "clear", None)):
        return False
    types, names, properties = state["types"], state["names"], state["properties"]
    if not (isinstance(types, list) and isinstance(names, dict) and isinstance(properties, dict)):
        return False
    set_attribute = object.__setattr__

    def shared_init(self: Properties, packetType: int) -> None:
        set_attribute(self, "packetType", packetType)
        set_attribute(self, "types", types)
        set_attribute(self, "names", names)
        set_attribute(self, "properties", properties)

    def clear_held(self: Properties) -> None:
        held = [name for name in vars(self) if name not in _TABLE_ATTRIBUTES]
        for name in held:
            delattr(self, name)

    shared_init.shares_tables = True  # type: ignore[attr-defined]
    Properties.__init__ = shared_init  # type: ignore[method-assign]
    Properties.clear = clear_held  # type: ignore[method-assign]
    return True


def held_properties(properties: Any) -> dict[str, Any]:
    """The properties an object holds, by paho's compressed name (for tests and logs)."""
    return {k: v for k, v in vars(properties).items() if k not in _TABLE_ATTRIBUTES}
