"""Testing the demo functions with sf_asgi.testing: the README's worked example.

pytest puts this folder on sys.path, so the functions import like any module.
"""

from pathlib import Path

import cookies
import form
import image
import index

from sf_asgi.testing import invoke, make_context, make_event

HERE = Path(__file__).parent


def test_echo_sees_the_platforms_event():
    result = invoke(index.handler, method="POST", query={"param": "one"}, json={"hello": "world"})
    event = result.json()["event"]
    assert event["queryStringParameters"] == {"param": "one"}
    assert event["isBase64Encoded"] is False  # JSON stays text
    assert event["headers"]["X-Request-Id"] == event["requestContext"]["requestId"]


def test_form_post_arrives_base64_encoded():
    event = make_event("POST", body="name=Ada", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert event["isBase64Encoded"] is True  # a hand-made event would likely get this wrong
    assert "Thank you, Ada!" in invoke(form.handler, event).text


def test_image_is_sent_as_binary():
    result = invoke(image.handler, query={"color": "00ff00"})
    assert result.status_code == 200
    assert result.headers["Content-Type"] == "image/png"
    assert result.body.startswith(b"\x89PNG")


def test_two_cookies_stay_two_lines():
    result = invoke(cookies.handler, query={"visits": "41"})
    assert result.json() == {"visits": 42}
    assert len(result.headers.get_list("Set-Cookie")) == 2


def test_api_over_http(sf_client):
    client = sf_client("api.handler", source_dir=str(HERE))  # a fresh instance: its own cold start
    created = client.post("/", json={"title": "ship it"})
    assert created.status_code == 201
    assert client.get("/").json() == {"todos": [created.json()]}
    assert client.post("/", data={"title": "form"}).status_code == 415


def test_a_malformed_result_fails_as_in_the_cloud():
    def broken(event, context):
        return {"statusCode": "200", "body": {"not": "a string"}}

    result = invoke(broken)
    assert result.status_code == 502
    assert result.error["errorType"] == "ProxyIntegrationError"


def test_an_exception_is_the_platforms_502():
    def failing(event, context):
        raise ValueError("no such user")

    result = invoke(failing, context=make_context(function_name="users"))
    assert result.status_code == 502
    assert result.headers["X-Function-Error"] == "true"
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"] == "no such user"
