"""A minimal, fast OpenAI-compatible chat-completions server for benchmarks (asyncio, one
process, keep-alive). tests/fakeapi.py has the full fault matrix; this one only does what
the run benchmark needs at thousands of requests per second: a fixed latency and a share
of 429 replies with Retry-After, and an empty model list for a worker's probe (GET).

    python benchmarks/loopback_api.py --port 0 --latency 0.05 --rate-429 0.2 --retry-after 1

prints its base URL on the first line of stdout and serves until killed. On SIGTERM it
prints one more line, a JSON summary of what it served (requests, 429s, and how long after
their arrival the other replies left: mean and max, in ms), and exits.

Its event loop waits with select(), whose timeout has microsecond resolution: asyncio's
default loop on Linux waits with epoll, which rounds every timeout up to a whole
millisecond, so replies left 50.5 ms after their request instead of 50 on average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import selectors
import signal
import sys

from daydream.providers.offline import render_offline_reply


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, args, rng, served) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = json.loads(await reader.readexactly(length)) if length else {}
            arrived = loop.time()
            if head.startswith(b"GET "):
                # A probe (GET /models: is the server there?): no model call, no 429.
                payload = b'{"object": "list", "data": []}'
                status = b"200 OK"
                extra = b""
            # A rate limiter answers at the edge, before any inference: 429s come back at once.
            elif rng.random() < args.rate_429:
                payload = b'{"error": {"message": "rate limited", "code": 429}}'
                status = b"429 Too Many Requests"
                extra = f"Retry-After: {args.retry_after}\r\n".encode()
                served["throttled"] += 1
            else:
                prompt = body["messages"][-1]["content"]
                text = render_offline_reply(prompt, model=body.get("model", "m"), seed=body.get("seed"), label="[loopback]")
                payload = json.dumps(
                    {
                        "id": "bench",
                        "model": "loopback/" + body.get("model", "m"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4},
                    }
                ).encode()
                status = b"200 OK"
                extra = b""
                # The reply leaves `latency` after the request arrived: the server's own
                # work is part of the latency, not added to it.
                await asyncio.sleep(max(0.0, arrived + args.latency - loop.time()))
                took = loop.time() - arrived
                served["ok"] += 1
                served["latency_sum"] += took
                served["latency_max"] = max(served["latency_max"], took)
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(payload)).encode() + b"\r\n" + extra + b"\r\n" + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _summary(served: dict) -> str:
    ok = served["ok"]
    return json.dumps(
        {
            "requests": ok + served["throttled"],
            "throttled": served["throttled"],
            "mean_latency_ms": round(1000 * served["latency_sum"] / ok, 3) if ok else None,
            "max_latency_ms": round(1000 * served["latency_max"], 3),
        }
    )


async def _serve(args) -> None:
    rng = random.Random(args.seed)
    served = {"ok": 0, "throttled": 0, "latency_sum": 0.0, "latency_max": 0.0}
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stopped.done() or stopped.set_result(None))
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, args, rng, served), "127.0.0.1", args.port, backlog=1024
    )
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    await stopped
    server.close()
    print(_summary(served), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(_serve(args))
    except KeyboardInterrupt:
        pass
    # Open keep-alive connections still have handler tasks: leave without tearing them down.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
