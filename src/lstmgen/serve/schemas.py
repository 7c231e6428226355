"""What goes over the wire: the request and response shapes of the OpenAI-style API (as they
appear in /openapi.json) and the error envelope, {"error": {message, type, param, code}}."""

from __future__ import annotations

import json
import re
from typing import Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

MAX_N = 16  # choices per prompt, shown in the schema and checked by the app


class ApiError(Exception):
    """A client's mistake, answered as {"error": {...}} with this status."""

    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        413: "invalid_request_error",
        422: "invalid_request_error",
        503: "unavailable_error",
    }

    def __init__(self, status: int, message: str, param: str | None = None):
        message = LONG_NUMBER.sub(_cut_number, message)  # a 400-digit max_tokens is not echoed
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


LONG_NUMBER = re.compile(r"\d{21,}")  # more digits than any int64


def _cut_number(match: re.Match) -> str:
    return f"{match[0][:12]}… ({len(match[0])} digits)"


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    """A JSON error in the envelope OpenAI-compatible servers use; its type follows the status."""
    body = {
        "error": {
            "message": message,
            "type": ApiError.TYPES.get(status, "server_error"),
            "param": param,
            "code": status,
        }
    }
    return AsciiJSON(body, status_code=status)


class AsciiJSON(JSONResponse):
    """JSON with ASCII escapes: a client's lone surrogate echoed in a message cannot break it."""

    def render(self, content) -> bytes:
        return json.dumps(content).encode()


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True)
    include_usage: bool = False


def at_least(low: float, high: float | None = None) -> dict:
    """Bounds shown in the schema; the app checks them itself (400, with the CLI's message)."""
    bounds = {"minimum": low} | ({"maximum": high} if high is not None else {})
    return {"json_schema_extra": bounds}


class CompletionRequest(BaseModel):
    """POST /v1/completions; fields other servers take but lstmgen does not are ignored.

    Strict types: "n": "2" or "max_tokens": true is a 422 naming the field, not coerced
    (a whole number is still a number)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    model: str | None = Field(None, description="A served run's name; optional with one run.")
    prompt: str | list[str] = Field("", description="Text to continue, or a list of them.")
    max_tokens: int = Field(16, description="Tokens to generate per choice.", **at_least(0))
    temperature: float = Field(
        1.0, description="0 = greedy; higher = more surprising.", **at_least(0)
    )
    top_p: float = Field(1.0, description="Sample from the smallest set holding this (0, 1].")
    top_k: int | None = Field(None, description="Sample among the k most likely (0 or -1: all).")
    n: int = Field(1, description="Choices per prompt.", **at_least(1, MAX_N))
    stop: str | list[str] | None = Field(None, description="End a choice where this appears.")
    seed: int | None = Field(None, description="Same seed and settings, same text.", **at_least(0))
    stream: bool = Field(False, description="Send text as server-sent events as it is made.")
    stream_options: StreamOptions | None = None
    repetition_penalty: float = Field(1.0, description="Above 1: recent tokens less likely.")
    max_copy: int | None = Field(
        None,
        description="lstmgen's extension: no choice holds a span of more than this many "
        "characters of the run's training text (the prompt not counted).",
        **at_least(1),
    )
    min_tokens: int = Field(0, description="No stop ends a choice before this many.", **at_least(0))
    condition: dict[str, str] | str | list[str] | None = Field(
        None,
        description="lstmgen's extension: write under these values of the run's condition "
        'columns, as {"Score": "5"}, "Score=5", ["Score=5", "Type=x"], or a bare "5" when the '
        "run has one condition column (GET /v1/models lists them); columns left out are "
        "drawn from their training share.",
    )


class Choice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lstmgen"
    level: str
    parameters: int
    best_val_bits_per_char: float | None
    conditions: dict[str, list[str]] | None = Field(
        None, description="Each condition column's values (runs trained with conditions)."
    )
    precision: str = Field(
        "fp32", description="What the model computes in here: fp32, bf16 or int8 (--precision)."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: int


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 503)}
