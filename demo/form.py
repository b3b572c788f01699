"""An HTML page with a form; the POST comes back base64-encoded, as on the platform."""

import base64
import html
from urllib.parse import parse_qs

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Guest book</title></head>
<body>
<h1>Guest book</h1>
{greeting}
<form method="post">
  <label>Your name <input name="name"></label>
  <button>Sign</button>
</form>
</body></html>
"""


def handler(event, context):
    greeting = ""
    if event["httpMethod"] == "POST":
        raw = event["body"]
        if event["isBase64Encoded"]:  # a form body is never plain text in the event
            raw = base64.b64decode(raw).decode("utf-8")
        name = parse_qs(raw).get("name", ["stranger"])[0]
        greeting = f"<p>Thank you, {html.escape(name)}!</p>"
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "text/html; charset=utf-8"},
        "body": PAGE.format(greeting=greeting),
    }
