"""The benchmark's hello function behind a one-route API Gateway spec, one process instance."""

from pathlib import Path

from sf_asgi import GatewayApp

SPEC = {
    "openapi": "3.0.0",
    "paths": {"/": {"get": {"x-yc-apigateway-integration": {"type": "cloud_functions", "function_id": "hello"}}}},
}
HERE = str(Path(__file__).parent)
app = GatewayApp(SPEC, functions={"hello": {"source": HERE, "handler": "functions.hello", "max_instances": 1}})
