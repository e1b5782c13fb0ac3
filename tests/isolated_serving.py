"""Run as a script: serve an artifact and answer a gRPC and an HTTP request with torch made
unimportable and an audit hook (PEP 578) watching; then fail if torch, transformers or onnx
were imported, or if anything was unpickled, a process spawned, or code compiled, run, imported
or loaded from the artifact's directory. Argument: the artifact directory."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request

sys.modules["torch"] = None  # type: ignore[assignment]  # importing torch now raises

ARTIFACT = os.path.realpath(sys.argv[1])
SPAWNING = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "subprocess.Popen"}
violations: list[str] = []


def _inside_artifact(value: object) -> bool:
    path = getattr(value, "co_filename", value)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return isinstance(path, str) and os.path.realpath(path).startswith(ARTIFACT)


def audit(event: str, args: tuple) -> None:
    if event == "pickle.find_class" or event in SPAWNING:
        violations.append(f"{event}{args!r}"[:200])
    elif event in ("exec", "compile", "ctypes.dlopen") and args and _inside_artifact(args[-1]):
        violations.append(f"{event} of code from the artifact")
    elif event == "import" and any(_inside_artifact(entry) for entry in args[2] or ()):
        violations.append(f"import {args[0]} with the artifact on sys.path")


sys.addaudithook(audit)
# The hook must see what it watches for: unpickling a global is caught (then forgotten).
pickle = __import__("pickle")
pickle.loads(pickle.dumps(os.path.join))
assert violations and violations[0].startswith("pickle.find_class"), violations
violations.clear()

from gradlight.cli.main import build_parser  # noqa: E402
from gradlight.client import Client  # noqa: E402
from gradlight.runtime.serving.model_registry import load_engines  # noqa: E402
from gradlight.runtime.serving.server import ServerSettings, start_server  # noqa: E402
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
    if violations:
        sys.exit("the serving path ran code it must not: " + "; ".join(violations[:5]))
