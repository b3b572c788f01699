"""Cookies: two Set-Cookie lines through multiValueHeaders.

The platform strips the Cookie request header on a direct invocation, so the visit
count travels in the query string here; behind API Gateway the Cookie header arrives.
"""

import json


def handler(event, context):
    visits = int(event["queryStringParameters"].get("visits", "0")) + 1
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {
            "Set-Cookie": [
                f"visits={visits}; Path=/; Max-Age=3600",
                "theme=dark; Path=/; HttpOnly; SameSite=Lax",
            ]
        },
        "body": json.dumps({"visits": visits}),
    }
