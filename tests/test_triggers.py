"""The trigger events, compared with the platform's documented examples (gateway-facts §3)."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest

from sf_asgi.testing import make_trigger_event

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
YANDEX_ID = re.compile(r"^[a-z][a-z0-9]{19}$")
MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
GO_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000 UTC")

# The documented examples' shapes: each key with the type (or pattern) of its value.
SHAPES: dict[str, dict[str, Any]] = {
    "timer": {
        "event_metadata": {
            "event_id": YANDEX_ID,
            "event_type": "yandex.cloud.events.serverless.triggers.TimerMessage",
            "created_at": MICROS,
            "cloud_id": YANDEX_ID,
            "folder_id": YANDEX_ID,
        },
        "details": {"trigger_id": YANDEX_ID, "payload": str},
    },
    "message_queue": {
        "event_metadata": {
            "event_id": UUID,
            "event_type": "yandex.cloud.events.messagequeue.QueueMessage",
            "created_at": MICROS,
        },
        "details": {
            "queue_id": re.compile(r"^yrn:yc:ymq:ru-central1:[a-z0-9]{20}:event-queue$"),
            "message": {
                "message_id": UUID,
                "md5_of_body": re.compile(r"^[0-9a-f]{32}$"),
                "body": str,
                "attributes": {"SentTimestamp": re.compile(r"^\d{13}$")},
                "message_attributes": dict,
                "md5_of_message_attributes": str,
            },
        },
    },
    "object_storage": {
        "event_metadata": {
            "event_id": UUID,
            "event_type": "yandex.cloud.events.storage.ObjectCreate",
            "created_at": MICROS,
            "tracing_context": {"trace_id": re.compile(r"^[0-9a-f]{16}$"), "span_id": str, "parent_span_id": str},
            "cloud_id": YANDEX_ID,
            "folder_id": YANDEX_ID,
        },
        "details": {"bucket_id": str, "object_id": str},
    },
    "iot": {
        "event_metadata": {"event_id": UUID, "event_type": "yandex.cloud.events.iot.IoTMessage", "created_at": NANOS},
        "details": {
            "registry_id": YANDEX_ID,
            "device_id": YANDEX_ID,
            "mqtt_topic": re.compile(r"^\$devices/[a-z0-9]{20}/events$"),
            "payload": str,
        },
    },
    "data_streams": {"key1": "value1"},
    "logging": {
        "event_metadata": {
            "event_id": UUID,
            "event_type": "yandex.cloud.events.serverless.triggers.LoggingMessageBatch",
            "created_at": {"seconds": int, "nanos": int},
        },
        "details": {"messages": list},
    },
    "budget": {
        "billing_account_id": str,
        "budget_id": str,
        "budget_display_name": str,
        "amount": float,
        "currency": "RUB",
        "period": str,
        "budgeted_amount": float,
        "threshold_amount": float,
        "threshold_type": "amount",
    },
    "mail": {"received_at": re.compile(GO_TIME.pattern + r" m=\+\d+\.\d{9}$"), "headers": list, "message": str},
}


def conforms(value: Any, shape: Any, where: str = "") -> None:
    if isinstance(shape, dict):
        assert isinstance(value, dict) and set(value) == set(shape), f"{where}: {sorted(value)} != {sorted(shape)}"
        for key, inner in shape.items():
            conforms(value[key], inner, f"{where}.{key}")
    elif isinstance(shape, re.Pattern):
        assert isinstance(value, str) and shape.match(value), f"{where}: {value!r} !~ {shape.pattern}"
    elif isinstance(shape, type):
        assert type(value) is shape, f"{where}: {type(value).__name__}, not {shape.__name__}"
    else:
        assert value == shape, f"{where}: {value!r} != {shape!r}"


@pytest.mark.parametrize("kind", list(SHAPES))
def test_each_kind_has_the_documented_shape(kind: str) -> None:
    event = make_trigger_event(kind)
    assert list(event) == ["messages"] and event["messages"]
    conforms(event["messages"][0], SHAPES[kind], kind)


def test_message_queue_batch_bodies_attributes_and_their_md5() -> None:
    event = make_trigger_event("message_queue", body=["one", "two"], attributes={"kind": "x", "n": 3})
    messages = [m["details"]["message"] for m in event["messages"]]
    assert [m["body"] for m in messages] == ["one", "two"]
    assert [m["md5_of_body"] for m in messages] == [hashlib.md5(b"one").hexdigest(), hashlib.md5(b"two").hexdigest()]
    assert messages[0]["message_attributes"] == {
        "kind": {"dataType": "String", "stringValue": "x"},
        "n": {"dataType": "Number", "stringValue": "3"},
    }
    # SQS's algorithm: the attributes sorted by name, every part length-prefixed, 1 for a string value.
    from sf_asgi._triggers import message_attributes_md5

    assert messages[0]["md5_of_message_attributes"] == message_attributes_md5(messages[0]["message_attributes"])
    assert messages[0]["message_id"] == event["messages"][0]["event_metadata"]["event_id"]
    assert make_trigger_event("message_queue")["messages"][0]["details"]["message"]["md5_of_message_attributes"] == ""


def test_md5_of_message_attributes_by_the_sqs_algorithm() -> None:
    from sf_asgi._triggers import message_attributes_md5

    # Computed by hand: name "a" (1), type "String" (6), transport 1, value "b" (1).
    expected = hashlib.md5(b"\0\0\0\x01a\0\0\0\x06String\x01\0\0\0\x01b").hexdigest()
    assert message_attributes_md5({"a": {"dataType": "String", "stringValue": "b"}}) == expected


@pytest.mark.parametrize(
    ("action", "event_type"), [("create", "ObjectCreate"), ("update", "ObjectUpdate"), ("delete", "ObjectDelete")]
)
def test_object_storage_actions(action: str, event_type: str) -> None:
    event = make_trigger_event("object_storage", key=["a.jpg", "b/c.png"], bucket="photos", action=action)
    assert [m["details"] for m in event["messages"]] == [
        {"bucket_id": "photos", "object_id": "a.jpg"},
        {"bucket_id": "photos", "object_id": "b/c.png"},
    ]
    assert event["messages"][0]["event_metadata"]["event_type"] == f"yandex.cloud.events.storage.{event_type}"


def test_iot_payload_is_base64_as_the_platform_sends_it() -> None:
    event = make_trigger_event("iot", payload=["Test 4", b"\x00\xff"], device_id="are1", topic="$devices/are1/state")
    details = [m["details"] for m in event["messages"]]
    assert [base64.b64decode(d["payload"]) for d in details] == [b"Test 4", b"\x00\xff"]
    assert details[0]["payload"] == "VGVzdCA0"  # the documented example's payload
    assert details[0]["mqtt_topic"] == "$devices/are1/state"


def test_timer_payload_trigger_and_time() -> None:
    event = make_trigger_event("timer", payload="tick", trigger_id="a1sfixed", now=1575461114.227761)
    message = event["messages"][0]
    assert message["details"] == {"trigger_id": "a1sfixed", "payload": "tick"}
    assert message["event_metadata"]["created_at"] == "2019-12-04T12:05:14.227761Z"


def test_data_streams_logging_budget_and_mail_take_their_values() -> None:
    assert make_trigger_event("data_streams", records=[{"a": 1}])["messages"] == [{"a": 1}]
    logs = make_trigger_event("logging", message=["one", "two"], level="ERROR")["messages"][0]["details"]["messages"]
    assert [(r["message"], r["level"]) for r in logs] == [("one", "ERROR"), ("two", "ERROR")]
    assert GO_TIME.match(logs[0]["timestamp"])
    budget = make_trigger_event("budget", amount=95.5, threshold_type="percent")["messages"][0]
    assert (budget["amount"], budget["threshold_type"]) == (95.5, "percent")
    mail = make_trigger_event("mail", body="<p>hi</p>", subject="Report")["messages"][0]
    headers = {h["name"]: h["values"] for h in mail["headers"]}
    assert headers["Subject"] == ["Report"] and mail["message"] == "<p>hi</p>"


@pytest.mark.parametrize(
    ("kind", "fields", "error", "message"),
    [
        ("cron", {}, ValueError, "unknown trigger kind 'cron': use one of timer, message_queue"),
        ("timer", {"body": "x"}, TypeError, "a timer event takes payload, trigger_id, folder_id, now; not body"),
        ("object_storage", {"action": "copy"}, ValueError, "action must be create, update or delete"),
        ("budget", {"threshold_type": "ratio"}, ValueError, "threshold_type must be amount or percent"),
    ],
)
def test_wrong_kinds_and_fields_name_the_fix(kind: str, fields: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        make_trigger_event(kind, **fields)
