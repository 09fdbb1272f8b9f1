"""paho's MQTT 5 property tables shared by every Properties object: same bytes, same
errors, no values shared between messages."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from urbanstack.ingest.paho_tables import held_properties, share_property_tables


@pytest.fixture(autouse=True)
def shared() -> None:
    assert share_property_tables()


def test_instances_share_one_set_of_tables() -> None:
    a, b = Properties(PacketTypes.PUBLISH), Properties(PacketTypes.CONNECT)
    assert a.names is b.names and a.properties is b.properties and a.types is b.types
    assert (a.packetType, b.packetType) == (PacketTypes.PUBLISH, PacketTypes.CONNECT)


def test_publish_properties_pack_to_the_bytes_mqtt5_defines() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "a"
    props.MessageExpiryInterval = 60
    props.UserProperty = ("k", "v")
    packed = props.pack()
    # length 16: 0x02 + 4-byte 60; 0x03 + "a"; 0x26 + "k" + "v" (order as paho writes it)
    assert packed[0] == len(packed) - 1 == 16
    assert b"\x02\x00\x00\x00\x3c" in packed
    assert b"\x03\x00\x01a" in packed
    assert b"\x26\x00\x01k\x00\x01v" in packed


def test_unpacked_properties_equal_the_packed_ones() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.UserProperty = [("site", "hue"), ("kind", "gauge")]
    decoded, length = Properties(PacketTypes.PUBLISH).unpack(props.pack() + b"payload")
    assert length == len(props.pack())
    assert held_properties(decoded) == {
        "ContentType": "application/json",
        "UserProperty": [("site", "hue"), ("kind", "gauge")],
    }


def test_instances_never_share_property_values() -> None:
    a, b = Properties(PacketTypes.PUBLISH), Properties(PacketTypes.PUBLISH)
    a.ContentType = "text/plain"
    assert held_properties(b) == {}
    assert not hasattr(b, "ContentType")


def test_clear_removes_only_the_held_properties() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "text/plain"
    props.clear()
    assert held_properties(props) == {}
    assert props.names and props.packetType == PacketTypes.PUBLISH


def test_unknown_names_and_wrong_packet_types_still_raise() -> None:
    props = Properties(PacketTypes.PUBLISH)
    with pytest.raises(MQTTException):
        props.NotAProperty = 1
    with pytest.raises(MQTTException):
        props.ReceiveMaximum = 10  # a CONNECT property
    connect = Properties(PacketTypes.CONNECT)
    with pytest.raises(MQTTException):
        connect.ReceiveMaximum = 0  # out of range


def test_sharing_twice_changes_nothing() -> None:
    init = Properties.__init__
    assert share_property_tables()
    assert Properties.__init__ is init
