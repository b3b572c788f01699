"""The events triggers call functions with: pure builders, one per kind (gateway-facts §3).

Every trigger calls with `integration=raw` and an event that is always `{"messages": [...]}`,
one element per event even when there is one. Ids and timestamps look like the platform's
(Yandex ids, UUIDs, the time format each kind uses); only what a test varies is a keyword.
A list where a single value is taken gives a batch of that many messages.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import inspect
import json
import secrets
import string
import struct
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._types import TriggerEvent

_ALPHABET = string.ascii_lowercase + string.digits


def yandex_id(prefix: str) -> str:
    """A 20-character resource id as the platform makes them, e.g. `a1s41g2n5g0o...` for a trigger."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(20 - len(prefix)))


def _now(now: float | None) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.UTC)


def _micros(moment: datetime.datetime) -> str:
    """`2019-12-04T12:05:14.227761Z`: timer, Message Queue and Object Storage events."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _nanos(moment: datetime.datetime) -> str:
    """`2019-09-25T15:51:17.872320525Z`: IoT Core events (Go's RFC 3339 with nanoseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{secrets.randbelow(1000):03d}Z"


def _go_time(moment: datetime.datetime) -> str:
    """`2021-09-02 18:29:17.118082213 +0000 UTC`: Go's time.String(), as the logging and mail events carry it."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") + f"{secrets.randbelow(1000):03d} +0000 UTC"


def _many(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _metadata(event_type: str, moment: datetime.datetime, event_id: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": event_type, "created_at": _micros(moment), **extra}


def timer(
    payload: str | list[str] = "",
    *,
    trigger_id: str | None = None,
    folder_id: str | None = None,
    now: float | None = None,
) -> TriggerEvent:
    moment, trigger = _now(now), trigger_id or yandex_id("a1s")
    cloud, folder = yandex_id("b1g"), folder_id or yandex_id("b1g")
    return {
        "messages": [
            {
                "event_metadata": _metadata(
                    "yandex.cloud.events.serverless.triggers.TimerMessage",
                    moment,
                    yandex_id("a1s"),
                    cloud_id=cloud,
                    folder_id=folder,
                ),
                "details": {"trigger_id": trigger, "payload": text},
            }
            for text in _many(payload)
        ]
    }


def message_attributes_md5(attributes: Mapping[str, Mapping[str, str]]) -> str:
    """MD5 of message attributes by Message Queue's (SQS's) algorithm: names sorted, each part length-prefixed."""
    buffer = b""
    for name in sorted(attributes):
        attribute = attributes[name]
        kind = attribute["dataType"].encode()
        binary = "binaryValue" in attribute
        value = base64.b64decode(attribute["binaryValue"]) if binary else attribute["stringValue"].encode()
        buffer += struct.pack(">I", len(name.encode())) + name.encode() + struct.pack(">I", len(kind)) + kind
        buffer += (b"\x02" if binary else b"\x01") + struct.pack(">I", len(value)) + value
    return hashlib.md5(buffer).hexdigest()


def _attribute(value: Any) -> dict[str, str]:
    if isinstance(value, bytes):
        return {"dataType": "Binary", "binaryValue": base64.b64encode(value).decode()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"dataType": "Number", "stringValue": str(value)}
    return {"dataType": "String", "stringValue": str(value)}


def message_queue(
    body: str | list[str] = "message body",
    *,
    attributes: Mapping[str, Any] | None = None,
    queue: str = "event-queue",
    folder_id: str | None = None,
    now: float | None = None,
) -> TriggerEvent:
    """`attributes` are message attributes (`{"key": "value"}`); str, numbers and bytes keep their types."""
    moment = _now(now)
    queue_id = f"yrn:yc:ymq:ru-central1:{folder_id or yandex_id('b1g')}:{queue}"
    typed = {name: _attribute(value) for name, value in (attributes or {}).items()}
    messages = []
    for text in _many(body):
        message_id = str(uuid.uuid4())
        message: dict[str, Any] = {
            "message_id": message_id,
            "md5_of_body": hashlib.md5(text.encode()).hexdigest(),
            "body": text,
            "attributes": {"SentTimestamp": str(int(moment.timestamp() * 1000))},
            "message_attributes": typed,
            "md5_of_message_attributes": message_attributes_md5(typed) if typed else "",
        }
        messages.append(
            {
                "event_metadata": _metadata("yandex.cloud.events.messagequeue.QueueMessage", moment, message_id),
                "details": {"queue_id": queue_id, "message": message},
            }
        )
    return {"messages": messages}


_STORAGE_ACTIONS = {"create": "ObjectCreate", "update": "ObjectUpdate", "delete": "ObjectDelete"}


def object_storage(
    key: str | list[str] = "uploads/image.jpg",
    *,
    bucket: str = "bucket",
    action: str = "create",
    folder_id: str | None = None,
    now: float | None = None,
) -> TriggerEvent:
    """`action` is `create`, `update` or `delete`."""
    if action not in _STORAGE_ACTIONS:
        raise ValueError(f"action must be create, update or delete, got {action!r}")
    moment = _now(now)
    cloud, folder = yandex_id("b1g"), folder_id or yandex_id("b1g")
    return {
        "messages": [
            {
                "event_metadata": _metadata(
                    f"yandex.cloud.events.storage.{_STORAGE_ACTIONS[action]}",
                    moment,
                    str(uuid.uuid4()),
                    tracing_context={"trace_id": secrets.token_hex(8), "span_id": "", "parent_span_id": ""},
                    cloud_id=cloud,
                    folder_id=folder,
                ),
                "details": {"bucket_id": bucket, "object_id": object_key},
            }
            for object_key in _many(key)
        ]
    }


def iot(
    payload: str | bytes | list[str | bytes] = "",
    *,
    device_id: str | None = None,
    registry_id: str | None = None,
    topic: str | None = None,
    now: float | None = None,
) -> TriggerEvent:
    """The payload as the device sent it; the event carries it base64-encoded, as the platform does."""
    moment = _now(now)
    registry, device = registry_id or yandex_id("are"), device_id or yandex_id("are")
    messages = []
    for data in _many(payload):
        raw = data.encode() if isinstance(data, str) else data
        messages.append(
            {
                "event_metadata": {
                    "event_id": str(uuid.uuid4()),
                    "event_type": "yandex.cloud.events.iot.IoTMessage",
                    "created_at": _nanos(moment),
                },
                "details": {
                    "registry_id": registry,
                    "device_id": device,
                    "mqtt_topic": topic or f"$devices/{device}/events",
                    "payload": base64.b64encode(raw).decode(),
                },
            }
        )
    return {"messages": messages}


def data_streams(records: Sequence[Any] = ({"key1": "value1"}, {"key2": "value2"})) -> TriggerEvent:
    """Data Streams sends the records themselves (JSON), without metadata."""
    return {"messages": [json.loads(json.dumps(record)) for record in records]}


def logging(
    message: str | list[str] = "START RequestID: 085035c7-2319-40dd-bb03-fdb2b1e7e5e5 Version: $latest",
    *,
    level: str = "INFO",
    resource_type: str = "serverless.function",
    resource_id: str | None = None,
    json_payload: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> TriggerEvent:
    """One batch of log records (the event's `details.messages`), `created_at` as {seconds, nanos}."""
    moment = _now(now)
    resource = {"type": resource_type, "id": resource_id or yandex_id("b09")}
    records = [
        {
            "resource": resource,
            "timestamp": _go_time(moment),
            "level": level,
            "message": text,
            "json_payload": dict(json_payload or {}),
        }
        for text in _many(message)
    ]
    stamp = moment.timestamp()
    return {
        "messages": [
            {
                "event_metadata": {
                    "event_id": str(uuid.uuid4()),
                    "event_type": "yandex.cloud.events.serverless.triggers.LoggingMessageBatch",
                    "created_at": {"seconds": int(stamp), "nanos": moment.microsecond * 1000},
                },
                "details": {"messages": records},
            }
        ]
    }


def budget(
    amount: float = 90012.0,
    *,
    budgeted_amount: float = 100000.0,
    threshold_amount: float = 90000.0,
    threshold_type: str = "amount",
    currency: str = "RUB",
    period: str | None = None,
    name: str = "budget",
) -> TriggerEvent:
    """A budget threshold notice; there is no event_metadata in this kind."""
    if threshold_type not in ("amount", "percent"):
        raise ValueError(f"threshold_type must be amount or percent, got {threshold_type!r}")
    return {
        "messages": [
            {
                "billing_account_id": yandex_id("dn2"),
                "budget_id": yandex_id("dn2"),
                "budget_display_name": name,
                "amount": amount,
                "currency": currency,
                "period": period or str(_now(None).year),
                "budgeted_amount": budgeted_amount,
                "threshold_amount": threshold_amount,
                "threshold_type": threshold_type,
            }
        ]
    }


def mail(
    body: str = "<div>Hello</div>\r\n",
    *,
    subject: str = "Hello",
    sender: str = "John Doe <somebody@yandex.ru>",
    to: str | None = None,
    headers: Mapping[str, str | list[str]] | None = None,
    now: float | None = None,
) -> TriggerEvent:
    """A received e-mail: headers as a list of {name, values}, the body as `message`; no event_metadata."""
    moment = _now(now)
    address = to or f"{yandex_id('a1s')}-{secrets.token_hex(4)}@serverless.yandexcloud.net"
    fields: dict[str, list[str]] = {
        "From": [sender],
        "To": [address],
        "Subject": [subject],
        "Date": [moment.strftime("%a, %d %b %Y %H:%M:%S +0000")],
        "Message-Id": [f"<{secrets.token_hex(8)}@mail.yandex.ru>"],
        "Content-Type": ["text/html"],
        "Mime-Version": ["1.0"],
    }
    for name, value in (headers or {}).items():
        fields[name] = _many(value)
    monotonic = f" m=+{time.monotonic():.9f}"
    return {
        "messages": [
            {
                "received_at": _go_time(moment) + monotonic,
                "headers": [{"name": name, "values": values} for name, values in fields.items()],
                "message": body,
            }
        ]
    }


BUILDERS: dict[str, Callable[..., TriggerEvent]] = {
    "timer": timer,
    "message_queue": message_queue,
    "object_storage": object_storage,
    "iot": iot,
    "data_streams": data_streams,
    "logging": logging,
    "budget": budget,
    "mail": mail,
}

# The main value of each kind, for `sf-asgi generate-event KIND --payload ...`.
MAIN_FIELD = {
    "timer": "payload",
    "message_queue": "body",
    "object_storage": "key",
    "iot": "payload",
    "data_streams": "records",
    "logging": "message",
    "budget": "amount",
    "mail": "body",
}


def make(kind: str, **fields: Any) -> TriggerEvent:
    """The event a trigger of `kind` calls with; ValueError naming the kinds, TypeError naming the fields."""
    builder = BUILDERS.get(kind.replace("-", "_"))
    if builder is None:
        raise ValueError(f"unknown trigger kind {kind!r}: use one of {', '.join(BUILDERS)}")
    known = list(inspect.signature(builder).parameters)
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise TypeError(f"a {kind} event takes {', '.join(known)}; not {', '.join(unknown)}")
    return builder(**fields)
