"""Cloud Functions handlers served by sf_asgi in the benchmarks."""

import json
import time


def hello(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "Hello, world!"}


async def hello_async(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "Hello, world!"}


def echo(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": event["body"]}


def upload(event, context):
    return {"statusCode": 200, "body": json.dumps({"length": len(event["body"])})}


def wait_50ms(event, context):
    time.sleep(0.05)  # a call to a database or another service
    return {"statusCode": 200, "body": "done"}
