"""Handlers that misbehave on request, for the tests that attack process instances.

`?do=` picks what the invocation does; every handler answers `{"pid", "count"}` when it
returns: the instance's process id and how many calls its module globals have seen.
"""

ATTACK = r"""
import asyncio, ctypes, json, os, signal, sys, time

COUNT = 0
LAST_LOOP = None
if os.environ.get("IMPORT_SLEEP"):
    time.sleep(float(os.environ["IMPORT_SLEEP"]))


def _answer():
    return {"statusCode": 200, "body": json.dumps({"pid": os.getpid(), "count": COUNT})}


def handler(event, context):
    global COUNT
    COUNT += 1
    q = event.get("queryStringParameters") or {}
    do = q.get("do", "")
    if do == "loop":
        while True:
            pass
    elif do == "sleep":
        time.sleep(float(q.get("s", "0.5")))
    elif do == "exit":
        os._exit(int(q.get("code", "1")))
    elif do == "segv":
        ctypes.string_at(0)
    elif do == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif do == "mem":
        hold = b"\x01" * (int(q["mb"]) * 1024 * 1024)  # written, so resident: not lazily zeroed pages
        del hold
    elif do == "print":
        for i in range(int(q.get("n", "3"))):
            print(f"{q.get('tag', 'line')}-{i}-" + "x" * int(q.get("width", "10")))
    elif do == "garbage":
        sys.stdout.buffer.write(bytes(range(256)) + b"no newline at the end")
        sys.stdout.flush()
    elif do == "close":
        sys.stdout.close()
        os.close(1)
    elif do == "orphan":  # leaves a process behind, holding the instance's stdout, then crashes
        import subprocess
        child = subprocess.Popen(["sleep", "25"])
        print(f"child {child.pid}", flush=True)
        os._exit(3)
    elif do == "partial":
        print(q.get("text", "no newline"), end="")
    elif do == "closerange":
        os.closerange(3, 1024)
    elif do == "env":
        return {"body": json.dumps({k: v for k, v in os.environ.items() if k.startswith(("SF_", "FN_"))})}
    elif do == "where":
        return {"body": json.dumps({"cwd": os.getcwd(), "path0": sys.path[0], "stdin": sys.stdin.read()})}
    return _answer()


async def ahandler(event, context):
    global COUNT
    COUNT += 1
    q = event.get("queryStringParameters") or {}
    do = q.get("do", "")
    if do == "block":
        time.sleep(float(q.get("s", "5")))
    elif do == "swallow":
        try:
            await asyncio.sleep(float(q.get("s", "5")))
        except asyncio.CancelledError:
            pass
    elif do == "sleep":
        await asyncio.sleep(float(q.get("s", "0.5")))
    elif do == "sameloop":  # was the previous invocation on this loop? (the reference keeps ids unique)
        global LAST_LOOP
        loop = asyncio.get_running_loop()
        same, LAST_LOOP = LAST_LOOP is loop, loop
        await asyncio.sleep(float(q.get("s", "0")))
        return {"body": json.dumps(same)}
    return _answer()
"""
