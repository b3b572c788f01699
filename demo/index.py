"""The platform docs' example: the event and the context, dumped back to the caller."""

import json


def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"event": event, "context": context}, default=vars),
    }
