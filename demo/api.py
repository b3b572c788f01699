"""A small JSON API: a to-do list kept in module globals (one instance, one call at a time)."""

import json

TODOS = {}
NEXT_ID = 1


def _json(status, data):
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(data)}


def handler(event, context):
    global NEXT_ID
    method = event["httpMethod"]
    query = event["queryStringParameters"]
    if method == "GET":
        return _json(200, {"todos": list(TODOS.values())})
    if method == "POST":
        if event["isBase64Encoded"]:
            return _json(415, {"error": "send JSON with Content-Type: application/json"})
        try:
            item = json.loads(event["body"] or "{}")
        except json.JSONDecodeError as exc:
            return _json(400, {"error": f"invalid JSON: {exc}"})
        if not isinstance(item, dict) or not isinstance(item.get("title"), str):
            return _json(422, {"error": 'expected {"title": "..."}'})
        todo = {"id": NEXT_ID, "title": item["title"], "done": False}
        TODOS[NEXT_ID] = todo
        NEXT_ID += 1
        return _json(201, todo)
    if method == "DELETE":
        todo = TODOS.pop(int(query.get("id", "0")), None)
        return _json(200, todo) if todo else _json(404, {"error": "no such id"})
    return _json(405, {"error": f"{method} is not supported"})
