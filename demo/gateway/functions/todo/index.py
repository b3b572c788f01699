"""A small to-do REST API behind the gateway: it routes on the gateway's `path` and `pathParams`."""

import base64
import json

TODOS: dict[str, dict] = {}  # one list per instance, as module globals are on the platform


def _reply(status, data=None):
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(data) if data is not None else "",
    }


def handler(event, context):
    method, template = event["httpMethod"], event["path"]
    if template == "/todos" and method == "GET":
        return _reply(200, {"todos": list(TODOS.values())})
    if template == "/todos" and method == "POST":
        text = base64.b64decode(event["body"]).decode() if event["isBase64Encoded"] else event["body"]
        body = json.loads(text or "{}")  # a client that sent no JSON Content-Type: the body arrives base64
        todo = {"id": str(len(TODOS) + 1), "title": body.get("title", ""), "done": False}
        TODOS[todo["id"]] = todo
        return _reply(201, todo)
    todo_id = event["pathParams"].get("id", "")
    if todo_id not in TODOS:
        return _reply(404, {"error": f"no todo {todo_id}"})
    if method == "DELETE":
        del TODOS[todo_id]
        return _reply(204)
    return _reply(200, TODOS[todo_id])
