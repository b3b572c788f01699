"""The peer: the same hello for Google's functions-framework, in both of its modes."""


def hello(request):
    return "Hello, world!"


async def hello_async(request):
    return "Hello, world!"
