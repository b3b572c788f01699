"""Who is calling: echoes what the gateway delivered (Cookie, Authorization, its own headers)."""

import json


def handler(event, context):
    headers = event["headers"]
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(
            {
                "url": event["url"],
                "path": event["path"],
                "params": event["params"],
                "authorization": headers.get("Authorization"),
                "gateway": headers.get("X-Serverless-Gateway-Id"),
                "operation": event["requestContext"].get("apiGateway", {}).get("operationContext"),
            }
        ),
    }
