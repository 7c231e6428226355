"""The HTTP service: OpenAI-style completions (JSON or server-sent events), models, the page.

`create_app(runs, ...)` loads the runs and returns a FastAPI (ASGI) app; `lstmgen serve` runs
it with uvicorn. Request and response shapes follow the OpenAI completions API as llama.cpp's
server and vLLM implement it; errors come in their envelope, {"error": {message, type, param,
code}}, with 4xx statuses for anything a client sends. Those shapes are in schemas.py; the
limit on request bodies in body_limit.py.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from lstmgen.config import SampleConfig, ServeConfig, random_seed
from lstmgen.describe import info
from lstmgen.errors import LstmgenError
from lstmgen.inference import Model, load
from lstmgen.serve.batcher import BatchWorker, Job, Overloaded
from lstmgen.serve.body_limit import BodyLimit
from lstmgen.serve.metrics import Observed, ServeMetrics
from lstmgen.serve.schemas import (
    ERRORS,
    MAX_N,
    ApiError,
    Choice,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
    Usage,
    error_response,
)

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1_000_000
MAX_PROMPT_CHARS = 32_768
MAX_PROMPTS = 16
# The CLI's flag in a SampleConfig message → the request's field.
FIELD_OF_FLAG = {"length": "max_tokens", "min-length": "min_tokens", "num-samples": "n"}


# ----- the app --------------------------------------------------------------------------------
def create_app(
    runs: Sequence[str | Path],
    settings: ServeConfig | None = None,
    *,
    device: str = "auto",
    checkpoint: str = "best",
    precision: str = "auto",
    **options,
) -> FastAPI:
    """An ASGI app serving these runs (each by its folder's name); options are ServeConfig's
    fields (api_key, max_batch, max_tokens, ...). Models load now: a bad run fails here."""
    config = settings or ServeConfig(**options)
    models: dict[str, Model] = {}
    cards: dict[str, ModelCard] = {}
    for run in runs:
        name = Path(run).resolve().name
        if name in models:
            raise LstmgenError(f"two runs are named {name!r}; serve runs from folders of own names")
        models[name] = load(
            run, checkpoint=checkpoint, device=device, precision=precision, verbose=True
        )
        about = info(run)
        cards[name] = ModelCard(
            id=name,
            created=int(Path(run).stat().st_mtime),
            level=about["level"],
            parameters=about["parameters"],
            best_val_bits_per_char=about["best_val_bits_per_char"],
            conditions=conditions_card(models[name]),
            precision=models[name].precision,
        )
    if not models:
        raise LstmgenError("name at least one run directory to serve")
    workers: dict[str, BatchWorker] = {}
    metrics = ServeMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for name, model in models.items():
            workers[name] = BatchWorker(
                model,
                max_batch=config.max_batch,
                max_waiting=4 * config.max_batch,
                name=name,
                metrics=metrics,
            )
        yield
        for worker in workers.values():
            worker.stop()

    app = FastAPI(
        title="lstmgen",
        description="OpenAI-compatible completions from lstmgen runs.",
        lifespan=lifespan,
    )
    app.state.workers = workers  # one per model, started with the app
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(Observed, metrics=metrics)  # outermost: sees every status, 413 included
    bearer = HTTPBearer(auto_error=False)

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), config.api_key.encode()):
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'")

    keyed = [Depends(authorised)] if config.api_key is not None else []  # in the schema: if set

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            return error_response(400, f"the body is not valid JSON ({first['msg']})")
        where = ".".join(str(part) for part in first["loc"][1:]) or "body"
        return error_response(422, f"{where}: {first['msg']}", where)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.api_route("/v1/chat/completions", methods=["GET", "POST"], include_in_schema=False)
    async def no_chat() -> None:
        raise ApiError(
            404,
            "this server serves text completions only: POST /v1/completions with a prompt "
            "(an lstmgen model continues text; it has no chat messages)",
        )

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/metrics", dependencies=keyed, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.text()
        return Response(body, media_type=content_type)

    @app.get("/v1/models", dependencies=keyed, responses=ERRORS)
    async def list_models() -> ModelList:
        return ModelList(data=list(cards.values()))

    @app.post(
        "/v1/completions",
        dependencies=keyed,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
    )
    async def completions(body: CompletionRequest, request: Request) -> Completion:
        arrived = time.perf_counter()
        name = model_name(body.model, models)
        model, prompts = models[name], check(body, config)
        settings = sample_config(body)
        conditions = condition_rows(model, body, settings)
        copy_guard(model, settings)
        parts = []
        for prompt in prompts:
            ids = model.prime_ids(prompt, quiet=True)
            # the first word's spacing follows the prompt's text (not a document's start)
            context = model.tokenizer.encode(prompt).tolist() if prompt else []
            decoders = [model.tokenizer.stream_decoder(context) for _ in range(body.n)]
            parts.append((ids, settings, decoders, conditions))
        job = Job(parts)
        answer = Answer(name, body.n, len(prompts), sum(len(part[0]) for part in parts))
        answer.metrics, answer.started = metrics, arrived
        request.state.answer = answer  # its tokens, for the request's log line
        if body.max_tokens > 0:
            try:
                workers[name].submit(job)
            except Overloaded as error:
                raise ApiError(503, str(error)) from None
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                answer.events(job, body.max_tokens == 0, usage), media_type="text/event-stream"
            )
        return await answer.whole(job, body.max_tokens == 0, request)

    return app


def model_name(asked: str | None, models: dict) -> str:
    """The served model a request names (the only one, when it names none); 400 or 404 else."""
    if asked is None:
        if len(models) == 1:
            return next(iter(models))
        raise ApiError(400, f"name a model: one of {', '.join(models)}", "model")
    if asked not in models:
        raise ApiError(
            404, f"model {asked!r} is not served here; ask for one of {', '.join(models)}", "model"
        )
    return asked


def check(body: CompletionRequest, config: ServeConfig) -> list[str]:
    """The request's prompts, after the server's limits (400 when over one)."""
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts:
        raise ApiError(400, "prompt is an empty list; give a string or a list of strings", "prompt")
    if len(prompts) > MAX_PROMPTS:
        raise ApiError(400, f"{len(prompts)} prompts; at most {MAX_PROMPTS} a request", "prompt")
    longest = max(len(p) for p in prompts)
    if longest > MAX_PROMPT_CHARS:
        raise ApiError(
            400, f"a prompt of {longest} characters; at most {MAX_PROMPT_CHARS}", "prompt"
        )
    if body.max_tokens < 0:
        raise ApiError(400, f"max_tokens {body.max_tokens} must be 0 or more", "max_tokens")
    if body.max_tokens > config.max_tokens:
        raise ApiError(
            400,
            f"max_tokens {body.max_tokens} is more than this server allows ({config.max_tokens})",
            "max_tokens",
        )
    if not 1 <= body.n <= MAX_N:
        raise ApiError(400, f"n {body.n} must be between 1 and {MAX_N}", "n")
    if body.n * len(prompts) > config.max_batch:
        raise ApiError(
            400,
            f"{body.n * len(prompts)} choices (prompts × n); this server batches at most "
            f"{config.max_batch}",
            "n",
        )
    return prompts


def sample_config(body: CompletionRequest) -> SampleConfig:
    """The request's settings, checked as the command line's are (400 with the field's name)."""
    top_k = None if body.top_k in (None, 0, -1) else body.top_k
    try:
        return SampleConfig(
            length=body.max_tokens,
            min_length=body.min_tokens,
            temperature=body.temperature,
            top_k=top_k,
            top_p=body.top_p,
            repetition_penalty=body.repetition_penalty,
            stop=[] if body.stop is None else body.stop,
            seed=body.seed,
            num_samples=body.n,
            max_copy=body.max_copy,
        )
    except LstmgenError as error:
        message = re.sub(
            r"--([a-z-]+)",
            lambda m: FIELD_OF_FLAG.get(m[1], m[1].replace("-", "_")),
            str(error),
        )
        raise ApiError(400, message, message.split()[0]) from None


def conditions_card(model: Model) -> dict[str, list[str]] | None:
    """What /v1/models says of a run's conditions: each column's values."""
    if model.conditions is None:
        return None
    return {column.name: list(column.values) for column in model.conditions.columns}


def condition_rows(model: Model, body: CompletionRequest, settings: SampleConfig):
    """Each choice's condition numbers (n, C) for a conditioned run (400 for an unknown value);
    the columns not asked for are drawn with the request's seed."""
    try:
        seed = settings.seed if settings.seed is not None else random_seed()
        return model.condition_rows(body.condition, body.n, seed)
    except LstmgenError as error:
        raise ApiError(400, str(error), "condition") from None


def copy_guard(model: Model, settings: SampleConfig) -> None:
    """Make sure the run's copy guard is at hand for max_copy (its index is built the first
    time, in this request); a run without its training text is a 400."""
    try:
        model.copy_guard(settings.max_copy)
    except LstmgenError as error:
        raise ApiError(400, str(error), "max_copy") from None


class Answer:
    """The reply to one request: choices in OpenAI's order (prompt by prompt, n each)."""

    def __init__(self, model: str, n: int, prompts: int, prompt_tokens: int):
        self.id, self.created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        self.model, self.n, self.choices = model, n, n * prompts
        self.prompt_tokens = prompt_tokens
        self.tokens = [0] * self.choices
        self.metrics: ServeMetrics | None = None  # where its first token's time is recorded
        self.started = time.perf_counter()
        self.loop_s = 0.0  # the event loop's time on this answer's pieces

    def usage(self) -> Usage:
        """Tokens of the prompts and of the choices made so far."""
        made = sum(self.tokens)
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=made,
            total_tokens=self.prompt_tokens + made,
        )

    async def pieces(self, job: Job, empty: bool) -> AsyncIterator[dict[int, list]]:
        """{choice: [text, finish_reason]} of all the pieces made since the last one."""
        if empty:  # max_tokens 0
            yield {i: ["", "length"] for i in range(self.choices)}
            return
        ended, first = 0, True
        try:
            while ended < self.choices:
                items = [await job.queue.get()]
                took = time.perf_counter()
                if first and self.metrics is not None:
                    self.metrics.first_token.observe(took - self.started)
                first = False
                while not job.queue.empty():
                    items.append(job.queue.get_nowait())
                merged: dict[int, list] = {}
                for item in items:
                    if isinstance(item, Exception):
                        raise item
                    for piece in item:
                        choice = piece.sample.index
                        self.tokens[choice] = piece.sample.made
                        entry = merged.setdefault(choice, ["", None])
                        entry[0] += piece.text
                        entry[1] = piece.end
                        ended += piece.end is not None
                self.loop_s += time.perf_counter() - took
                yield merged
        finally:
            job.cancelled = True  # a client gone: its samples leave at the next step
            if self.metrics is not None:
                self.metrics.event_loop.inc(self.loop_s)

    async def whole(self, job: Job, empty: bool, request: Request) -> Completion:
        """The whole completion, once every choice has ended (the non-streaming answer)."""
        texts, ends = [""] * self.choices, ["length"] * self.choices
        async for merged in self.pieces(job, empty):
            for choice, (text, end) in merged.items():
                texts[choice] += text
                ends[choice] = end or ends[choice]
        choices = [
            Choice(index=i, text=text, finish_reason=end)  # type: ignore[arg-type]
            for i, (text, end) in enumerate(zip(texts, ends, strict=True))
        ]
        return Completion(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=self.usage()
        )

    async def events(self, job: Job, empty: bool, usage: bool) -> AsyncIterator[str]:
        """Server-sent events: one per step with new text, then usage if asked, then [DONE]."""
        head = {"id": self.id, "object": "text_completion", "created": self.created}
        async for merged in self.pieces(job, empty):
            started = time.perf_counter()
            choices = [
                {"index": i, "text": text, "finish_reason": end, "logprobs": None}
                for i, (text, end) in sorted(merged.items())
            ]
            event = sse({**head, "model": self.model, "choices": choices})
            self.loop_s += time.perf_counter() - started
            yield event
        if usage:
            yield sse(
                {**head, "model": self.model, "choices": [], "usage": self.usage().model_dump()}
            )
        yield "data: [DONE]\n\n"


def sse(data: dict) -> str:
    """One server-sent event carrying `data` as JSON."""
    return f"data: {json.dumps(data)}\n\n"
