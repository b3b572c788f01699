"""A function authorizer: the bearer token `demo-token` may change the to-do list."""


def handler(event, context):
    token = event["headers"].get("Authorization", "").removeprefix("Bearer ")
    return {"isAuthorized": token == "demo-token", "context": {"user": "demo"}}
