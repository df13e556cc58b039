"""The naive baseline for ``complaint-triage bench``: a plain ``transformers`` text-classification
pipeline (PyTorch, CPU) behind a minimal ASGI app under uvicorn.

Same request shape as the real service (``POST /v1/score`` with ``{"messages": [{"text": ...}]}``),
but no micro-batching: every request runs the pipeline on its own, in a worker thread
(``anyio.to_thread``, what a sync FastAPI/Starlette endpoint does). The model is the converted
e5 backbone with a *randomly initialised* 5-way head: its outputs are meaningless, which is fine
for a speed comparison. Run only by the benchmark; torch is imported inside :func:`main`.

``python -m tools.bench_torch_server --port P [--backbone multilingual-e5-small] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Classify = Callable[[list[str]], list[Any]]


def load_pipeline(backbone: str, threads: int, max_length: int, prefix: str) -> Classify:
    """``transformers.pipeline("text-classification")`` over the local backbone directory."""
    import torch
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast, pipeline

    from training.backbone import resolve

    torch.set_num_threads(threads)
    path = resolve(backbone).path
    # the converted dir has only tokenizer.json (XLM-R vocabulary), so name its special tokens
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"), model_max_length=512,
                                        bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        sep_token="</s>", cls_token="<s>", pad_token="<pad>",
                                        mask_token="<mask>")
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=5)  # random head
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)

    def classify(texts: list[str]) -> list[Any]:
        return pipe([prefix + t for t in texts], truncation=True, max_length=max_length)  # type: ignore[no-any-return]

    classify(["warm-up message"])  # first call also fixes the tokenizer's truncation state
    return classify


def make_app(classify: Classify) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A bare ASGI app: GET /ready, GET /health, POST /v1/score."""
    import anyio

    async def reply(send: Send, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path in ("/ready", "/health"):
            await reply(send, 200, {"status": "ready"})
            return
        if method != "POST" or path != "/v1/score":
            await reply(send, 404, {"detail": "not found"})
            return
        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        try:
            texts = [str(m["text"]) for m in json.loads(b"".join(chunks))["messages"]]
        except (ValueError, KeyError, TypeError):
            await reply(send, 400, {"detail": "expected {\"messages\": [{\"text\": ...}]}"})
            return
        labels = await anyio.to_thread.run_sync(classify, texts)
        await reply(send, 200, {"model": "transformers-pipeline (random head)", "results": labels})

    return app


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m tools.bench_torch_server", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="multilingual-e5-small")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    p.add_argument("--max-length", type=int, default=128, help="truncate like the bundle does")
    p.add_argument("--prefix", default="query: ", help="the e5 input prefix (same token count as the bundle)")
    args = p.parse_args(argv)
    classify = load_pipeline(args.backbone, args.threads, args.max_length, args.prefix)
    uvicorn.run(make_app(classify), host=args.host, port=args.port, log_level="warning", access_log=False,
                lifespan="off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
