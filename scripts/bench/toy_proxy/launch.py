"""Runs vLLM's toy_proxy_server.py as its own __main__ block does.

The bench downloads that file (it is not part of this repository) and starts
it through this launcher: `python3 launch.py FILE [its own flags]`. The only
difference from `python3 FILE ...` is for FastAPI before 0.93 (Debian 12
ships 0.92), which ignores `FastAPI(lifespan=...)` and would leave the proxy
without its httpx clients; the launcher hands that lifespan to the router,
which Starlette 0.26 runs.
"""

import importlib.util
import inspect
import sys

import fastapi
import uvicorn


def load(path):
    spec = importlib.util.spec_from_file_location("toy_proxy_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    path = sys.argv[1]
    sys.argv = [path, *sys.argv[2:]]
    toy = load(path)
    toy.global_args = toy.parse_args()
    if "lifespan" not in inspect.signature(fastapi.FastAPI.__init__).parameters:
        toy.app.router.lifespan_context = toy.lifespan
    uvicorn.run(toy.app, host=toy.global_args.host, port=toy.global_args.port)


if __name__ == "__main__":
    main()
