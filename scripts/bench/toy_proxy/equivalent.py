"""A P/D proxy built the way vLLM's toy_proxy_server.py is, for when that
file cannot be fetched: FastAPI on uvicorn, one httpx.AsyncClient without
connection limits per upstream, the prefill sent with stream=false and
max_tokens=1 and read whole, its kv_transfer_params copied into the decode
request, whose answer is streamed back. Written for this bench (no code
taken from vLLM); the bench labels its row as an equivalent.

    python3 equivalent.py --port P --prefiller-port A --decoder-port B
"""

import argparse
import uuid

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

PREFILL_KV = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}

app = FastAPI()
upstreams = {}


def unlimited_client(port):
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/v1",
        timeout=None,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
    )


def prefill_body(body):
    leg = {key: value for key, value in body.items() if key not in ("stream_options", "min_tokens")}
    leg.update(stream=False, max_tokens=1, kv_transfer_params=PREFILL_KV)
    if "max_completion_tokens" in leg:
        leg["max_completion_tokens"] = 1
    return leg


async def relay(path, body, headers):
    async with upstreams["decode"].stream("POST", path, json=body, headers=headers) as answer:
        answer.raise_for_status()
        async for chunk in answer.aiter_bytes():
            yield chunk


async def disaggregate(path, request):
    body = await request.json()
    headers = {"X-Request-Id": str(uuid.uuid4())}
    prefill = await upstreams["prefill"].post(path, json=prefill_body(body), headers=headers)
    prefill.raise_for_status()
    params = prefill.json().get("kv_transfer_params")
    if params:
        body["kv_transfer_params"] = params
    return StreamingResponse(relay(path, body, headers), media_type="application/json")


@app.post("/v1/chat/completions")
async def chat_completions(request: Request):
    return await disaggregate("/chat/completions", request)


@app.post("/v1/completions")
async def completions(request: Request):
    return await disaggregate("/completions", request)


@app.get("/healthcheck")
async def healthcheck():
    return {"status": "ok"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefiller-port", type=int, required=True)
    parser.add_argument("--decoder-port", type=int, required=True)
    args = parser.parse_args()
    upstreams["prefill"] = unlimited_client(args.prefiller_port)
    upstreams["decode"] = unlimited_client(args.decoder_port)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
