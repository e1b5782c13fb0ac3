"""Run as a script: serve an artifact and answer a gRPC and an HTTP request with torch made
unimportable, then fail if torch, transformers or onnx were imported. Argument: the artifact
directory."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request

sys.modules["torch"] = None  # type: ignore[assignment]  # importing torch now raises

from gradlight.cli.main import build_parser  # noqa: E402
from gradlight.client import Client  # noqa: E402
from gradlight.runtime.models import load_engines  # noqa: E402
from gradlight.runtime.server import ServerSettings, start_server  # noqa: E402
from gradlight.runtime.settings import EngineSettings  # noqa: E402


async def main(artifact: str) -> int:
    build_parser()
    engines = load_engines({"model": artifact}, EngineSettings(provider="cpu"))
    running = await start_server(engines, ServerSettings(port=0, http_port=0))

    def ask() -> int:
        with Client(f"127.0.0.1:{running.port}") as client:
            response = client.attribute(["A text. Another one."], sentence_attributions=True)
        body = json.dumps({"texts": ["A text. Another one."], "token_attributions": True})
        request = urllib.request.Request(
            running.http.url + "v1/attribute",  # type: ignore[union-attr]
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as answer:
            assert len(json.load(answer)["results"]) == 1
        return len(response.results)

    count = await asyncio.to_thread(ask)
    await running.stop(0)
    return count


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1])))
    heavy = {"torch", "transformers", "onnx", "onnxscript"}
    loaded = sorted({name.split(".")[0] for name, module in sys.modules.items() if module} & heavy)
    if loaded:
        sys.exit(f"the serving path imported {loaded}")
