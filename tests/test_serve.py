"""lstmgen serve: OpenAI client, raw HTTP and SSE, every error, batching, schemathesis, the page.

One live server (uvicorn in a thread, on a free loopback port) serves the shared tiny run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
import torch
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.specs.openapi.checks import positive_data_acceptance

import lstmgen
from lstmgen.config import ModelConfig, SampleConfig
from lstmgen.model import LSTMLanguageModel
from lstmgen.sampling.batch import RunningBatch
from lstmgen.sampling.stepper import NumpyLSTMStepper
from lstmgen.serve import create_app

openai = pytest.importorskip("openai")
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(trained_run):
    """(base URL, app) of a live server with small limits, stopped after the session."""
    app = create_app([trained_run], max_batch=16, max_tokens=300)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="session")
def url(served) -> str:
    return served[0]


@pytest.fixture
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused")


# ----- the OpenAI client ----------------------------------------------------------------------
def test_openai_client_completion(client, trained_run):
    model = client.models.list().data[0]
    assert model.id == trained_run.name
    done = client.completions.create(model=model.id, prompt="The cat", max_tokens=30, seed=1)
    assert done.object == "text_completion" and len(done.choices) == 1
    assert len(done.choices[0].text) == 30 and done.choices[0].finish_reason == "length"
    assert done.usage.completion_tokens == 30 and done.usage.prompt_tokens == len("The cat")
    again = client.completions.create(model=model.id, prompt="The cat", max_tokens=30, seed=1)
    assert again.choices[0].text == done.choices[0].text
    other = client.completions.create(model=model.id, prompt="The cat", max_tokens=30, seed=2)
    assert other.choices[0].text != done.choices[0].text


def test_openai_client_streams_n_choices_with_stop(client, trained_run):
    texts, ends = ["", "", ""], [None, None, None]
    for chunk in client.completions.create(
        model=trained_run.name, prompt=["The dog", "A"], max_tokens=60, n=3, stop=".",
        seed=4, stream=True,
    ):  # fmt: skip
        for choice in chunk.choices:
            if choice.index < 3:
                texts[choice.index] += choice.text
                ends[choice.index] = choice.finish_reason or ends[choice.index]
    whole = client.completions.create(
        model=trained_run.name, prompt=["The dog", "A"], max_tokens=60, n=3, stop=".", seed=4
    )
    assert [c.index for c in whole.choices] == list(range(6))
    assert [c.text for c in whole.choices[:3]] == texts
    assert all("." not in t for t in texts) and "stop" in ends
    # each prompt's choices are that prompt's samples 0..n-1: the same as the API's
    model = lstmgen.load(trained_run)
    expected = model.generate("A", length=60, num_samples=3, stop=["."], seed=4, temperature=1.0)
    assert [c.text for c in whole.choices[3:]] == expected


# ----- raw HTTP -------------------------------------------------------------------------------
def test_sse_framing_usage_and_done(url):
    body = {"prompt": "The", "max_tokens": 20, "stream": True, "seed": 3}
    body["stream_options"] = {"include_usage": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        raw = "".join(reply.iter_text())
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 20
    pieces = [c["choices"][0] for c in chunks[:-1]]
    assert pieces[-1]["finish_reason"] == "length"
    assert all(p["finish_reason"] is None for p in pieces[:-1])
    plain = httpx.post(f"{url}/v1/completions", json={**body, "stream": False}).json()
    assert "".join(p["text"] for p in pieces) == plain["choices"][0]["text"]


def test_health_unseen_characters_and_zero_tokens(url):
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    odd = httpx.post(f"{url}/v1/completions", json={"prompt": "日本語 ☃ é", "max_tokens": 5})
    assert odd.status_code == 200 and len(odd.json()["choices"][0]["text"]) == 5
    zero = httpx.post(f"{url}/v1/completions", json={"prompt": "a", "max_tokens": 0, "n": 2})
    assert [(c["text"], c["finish_reason"]) for c in zero.json()["choices"]] == [("", "length")] * 2


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"prompt": "a", "top_p": 1.5}, 400, "top_p 1.5 must be in (0, 1]"),
        ({"prompt": "a", "temperature": -1}, 400, "temperature -1.0 must be 0 (greedy)"),
        ({"prompt": "a", "max_tokens": 10, "min_tokens": 20}, 400, "min_tokens 20 must be"),
        ({"prompt": "a", "max_tokens": -1}, 400, "max_tokens -1 must be 0 or more"),
        ({"prompt": "a", "max_tokens": 301}, 400, "more than this server allows (300)"),
        ({"prompt": "a", "n": 17}, 400, "n 17 must be between 1 and 16"),
        ({"prompt": "a", "stop": [""]}, 400, "stop needs a non-empty string"),
        ({"prompt": []}, 400, "prompt is an empty list"),
        ({"prompt": "a" * 40_000}, 400, "at most 32768"),
        ({"model": "nope"}, 404, "model 'nope' is not served here"),
        ({"max_tokens": "many"}, 422, "max_tokens: Input should be a valid integer"),
        ({"prompt": 3}, 422, "prompt"),
    ],
)
def test_errors_come_in_the_envelope(url, body, status, says):
    reply = httpx.post(f"{url}/v1/completions", json=body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert says in error["message"] and error["code"] == status
    assert set(error) == {"message", "type", "param", "code"}


def test_bad_json_unknown_route_and_big_body(url):
    bad = httpx.post(
        f"{url}/v1/completions",
        content=b'{"prompt": ',
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    assert httpx.get(f"{url}/v2/nothing").json()["error"]["type"] == "not_found_error"
    big = httpx.post(f"{url}/v1/completions", json={"prompt": "a" * 1_100_000})
    assert big.status_code == 413 and "over 1,000,000 bytes" in big.json()["error"]["message"]

    def chunked():  # no content-length: counted as it arrives
        for _ in range(12):
            yield b" " * 100_000

    streamed = httpx.post(f"{url}/v1/completions", content=chunked())
    assert streamed.status_code == 413


def test_api_key_and_overload(trained_run):
    app = create_app([trained_run], api_key="sesame", max_batch=2)
    with TestClient(app) as http:
        assert http.get("/health").status_code == 200  # open, for load balancers
        missing = http.get("/v1/models")
        assert (
            missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
        )
        wrong = http.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        key = {"Authorization": "Bearer sesame"}
        assert http.get("/v1/models", headers=key).status_code == 200
        assert http.post("/v1/completions", json={"n": 3}, headers=key).status_code == 400
        for worker in app.state.workers.values():
            worker.stop()  # as when shutting down: new work is refused, clearly
        busy = http.post("/v1/completions", json={"prompt": "a"}, headers=key)
        assert busy.status_code == 503 and "shutting down" in busy.json()["error"]["message"]


# ----- batching -------------------------------------------------------------------------------
def test_concurrent_seeded_requests_match_one_by_one(served):
    url, app = served
    bodies = [
        {"prompt": p, "max_tokens": 80, "seed": s, "temperature": t, "top_k": k}
        | ({"repetition_penalty": 1.3} if s % 3 == 0 else {})
        for s, (p, t, k) in enumerate(
            [("The", 1.0, 0), ("A cat", 0.8, 5), ("", 1.0, 0), ("Dog", 0.0, 0)] * 2
        )
    ]

    async def ask_all(together: bool) -> list[str]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:

            async def ask(body):
                return (await http.post("/v1/completions", json=body)).json()["choices"][0]["text"]

            if together:
                return list(await asyncio.gather(*(ask(b) for b in bodies)))
            return [await ask(b) for b in bodies]

    worker = next(iter(app.state.workers.values()))
    alone = asyncio.run(ask_all(False))
    worker.most = 0
    together = asyncio.run(ask_all(True))
    assert worker.most > 1, "the requests were not batched"
    assert together == alone
    assert len(set(alone)) > 4


def test_exact_rows_give_the_same_bits_at_every_batch_size():
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=37, hidden=48, layers=2, embedding=16))
    state = tuple(torch.randn(2, 9, 48) for _ in range(2))
    ids = np.arange(1, 10)
    full = NumpyLSTMStepper(model, state, exact_rows=True).step(ids).copy()
    for size in (2, 5):
        part = NumpyLSTMStepper(model, tuple(s[:, :size] for s in state), exact_rows=True)
        assert np.array_equal(part.step(ids[:size]), full[:size])
    joined = NumpyLSTMStepper(model, tuple(s[:, :4] for s in state), exact_rows=True)
    joined.join(tuple(s[:, 4:] for s in state))
    assert np.array_equal(joined.step(ids), full)
    # A lone row takes generate's path (no padding row): the same bits as generate's stepper,
    # and a batched row's numbers up to rounding.
    one = tuple(s[:, :1] for s in state)
    lone = NumpyLSTMStepper(model, one, exact_rows=True).step(ids[:1])
    assert np.array_equal(lone, NumpyLSTMStepper(model, one).step(ids[:1]))
    np.testing.assert_allclose(lone, full[:1], rtol=0, atol=1e-5)
    left = NumpyLSTMStepper(model, state, exact_rows=True)
    left.keep(np.array([3]))  # a batch that empties down to one row goes on on the lone path
    fourth = NumpyLSTMStepper(model, tuple(s[:, 3:4] for s in state)).step(ids[3:4])
    assert np.array_equal(left.step(ids[3:4]), fourth)


def seeded_settings(count: int) -> list[tuple[str, SampleConfig]]:
    """Prompts and settings of `count` seeded requests, varied as clients vary them."""
    prompts = ["The", "A cat", "", "Dog", "the house of the"]
    return [
        (
            prompts[i % len(prompts)],
            SampleConfig(
                length=60 + 7 * (i % 5),
                temperature=[1.0, 0.8, 0.0, 1.2][i % 4],
                top_k=[None, 5, None, 20][i % 4],
                top_p=0.9 if i % 6 == 1 else None,
                repetition_penalty=1.3 if i % 3 == 0 else 1.0,
                stop=["."] if i % 7 == 2 else [],
                seed=100 + i,
            ),
        )
        for i in range(count)
    ]


def batch_texts(model, requests, size: int) -> list[str]:
    """Each request's text from a RunningBatch that holds `size` of them at a time (a new one
    joins as soon as one ends, as the server's do)."""
    batch = RunningBatch(model.module, banned=model.banned)
    texts, waiting = [""] * len(requests), list(enumerate(requests))
    while waiting or len(batch):
        while waiting and len(batch) < size:
            index, (prompt, config) = waiting.pop(0)
            decoder = model.tokenizer.stream_decoder(model.tokenizer.encode(prompt).tolist())
            batch.add(index, model.prime_ids(prompt, quiet=True), config, [decoder])
        for piece in batch.step():
            texts[piece.sample.owner] += piece.text
    return texts


def test_seeded_requests_give_the_same_text_alone_and_in_batches_of_1_2_7_and_64(trained_run):
    model = lstmgen.load(trained_run)
    requests = seeded_settings(64)
    alone = batch_texts(model, requests, 1)
    # a lone request is generate's text: the same stepper path (no padding row)
    for (prompt, config), text in list(zip(requests, alone, strict=True))[:8]:
        assert text == model.generate(prompt, config)
    for size in (2, 7, 64):
        assert batch_texts(model, requests, size) == alone, f"batches of {size}"
    assert len(set(alone)) > 40


def test_a_long_prompt_runs_in_bounded_chunks_between_the_steps_of_streams_in_flight(trained_run):
    model = lstmgen.load(trained_run)
    config = SampleConfig(length=40, seed=5, temperature=1.0)
    long_prompt = "the cat and the dog and the house " * 6  # 204 characters
    alone = batch_texts(model, [(long_prompt, config)], 1)[0]
    batch = RunningBatch(model.module, banned=model.banned, prime_chunk=16)
    decoder = model.tokenizer.stream_decoder
    batch.add("running", model.prime_ids("The"), SampleConfig(length=200, seed=1), [decoder()])
    batch.step()  # the running stream is in flight
    batch.add(
        "long",
        model.prime_ids(long_prompt),
        config,
        [decoder(model.tokenizer.encode(long_prompt).tolist())],
    )
    done, steps, text = [0], 0, ""
    while batch.priming:
        pieces = batch.step()
        steps += 1
        assert [p.sample.owner for p in pieces if p.sample.owner == "running"] == ["running"]
        done.append(batch.priming[0].done if batch.priming else len(long_prompt))
        text += "".join(p.text for p in pieces if p.sample.owner == "long")
    assert steps == -(-len(long_prompt) // 16) and max(np.diff(done)) <= 16
    while "long" in batch.owners():
        text += "".join(p.text for p in batch.step() if p.sample.owner == "long")
    # cut at the same places as with no stream in flight (every 16 tokens): the same text
    idle = RunningBatch(model.module, banned=model.banned, prime_chunk=16)
    idle.add(
        "long",
        model.prime_ids(long_prompt),
        config,
        [decoder(model.tokenizer.encode(long_prompt).tolist())],
    )
    again = ""
    while len(idle):
        again += "".join(p.text for p in idle.step())
    assert text == again and len(text) == 40
    assert alone == model.generate(long_prompt, config)  # shorter than the default chunk


# ----- /metrics -------------------------------------------------------------------------------
def read_metrics(http) -> dict[str, float]:
    """The samples of GET /metrics: {'name{labels}': value}."""
    reply = http.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_metrics_count_known_requests_and_each_request_is_logged(trained_run, capfd):
    app = create_app([trained_run], max_batch=8, max_tokens=100)
    name = f'model="{trained_run.name}"'
    with TestClient(app) as http:
        before = read_metrics(http)
        assert before.get('lstmgen_requests_total{status="200"}', 0) == 0
        for seed in (1, 2):
            body = {"prompt": "The", "max_tokens": 25, "seed": seed}
            assert http.post("/v1/completions", json=body).status_code == 200
        body = {"prompt": "A", "max_tokens": 10, "n": 3, "stream": True, "seed": 3}
        with http.stream("POST", "/v1/completions", json=body) as reply:
            assert "".join(reply.iter_text()).endswith("data: [DONE]\n\n")
        bad = http.post("/v1/completions", json={"prompt": "a", "top_p": 1.5})
        assert bad.status_code == 400
        assert http.post("/v1/completions", json={"max_tokens": "many"}).status_code == 422
        after = read_metrics(http)
    assert after['lstmgen_requests_total{status="200"}'] == 3
    assert after['lstmgen_requests_total{status="400"}'] == 1
    assert after['lstmgen_requests_total{status="422"}'] == 1
    assert after[f"lstmgen_tokens_generated_total{{{name}}}"] == 2 * 25 + 3 * 10
    assert after["lstmgen_time_to_first_token_seconds_count{}"] == 3
    assert after["lstmgen_request_seconds_count{}"] == 3
    assert after[f"lstmgen_batch_steps_total{{{name}}}"] >= 25 + 25 + 10
    assert after[f'lstmgen_batch_size_bucket{{le="+Inf",{name}}}'] >= 3
    assert (
        after[f'lstmgen_batch_size_bucket{{le="2.0",{name}}}']
        < after[f'lstmgen_batch_size_bucket{{le="+Inf",{name}}}']
    )  # the 3 samples of one request were stepped together
    assert after[f"lstmgen_batch_samples{{{name}}}"] == 0
    assert after[f"lstmgen_queue_samples{{{name}}}"] == 0
    assert 0 < after["lstmgen_event_loop_seconds_total{}"] < 5
    log = capfd.readouterr().err.splitlines()
    lines = [line for line in log if line.startswith("lstmgen: POST /v1/completions")]
    assert len(lines) == 5
    assert lines[0].startswith("lstmgen: POST /v1/completions 200 25 tokens ")
    assert lines[0].endswith(" s") and lines[2].startswith("lstmgen: POST /v1/completions 200 30 ")
    assert lines[3].startswith("lstmgen: POST /v1/completions 400 0 tokens")


def test_metrics_need_the_api_key_when_one_is_set(trained_run):
    with TestClient(create_app([trained_run], api_key="sesame")) as http:
        assert http.get("/metrics").status_code == 401
        keyed = http.get("/metrics", headers={"Authorization": "Bearer sesame"})
        assert keyed.status_code == 200 and "lstmgen_requests_total" in keyed.text


def test_the_batch_thread_chooses_between_one_thread_and_all_cores_but_one(
    trained_run, monkeypatch
):
    import lstmgen.serve.batcher as batcher
    import lstmgen.threads
    from lstmgen.threads import ThreadChooser, cores

    made: list[ThreadChooser] = []

    class Recorded(ThreadChooser):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.steps = 0
            made.append(self)

        def step_ends(self, now: float) -> None:
            self.steps += 1
            super().step_ends(now)

    monkeypatch.delenv("LSTMGEN_THREADS", raising=False)
    monkeypatch.setattr(lstmgen.threads, "_asked", None)  # as set by no --threads
    monkeypatch.setattr(batcher, "ThreadChooser", Recorded)
    with TestClient(create_app([trained_run])) as http:
        assert http.post("/v1/completions", json={"max_tokens": 20}).status_code == 200
    assert len(made) == 1 and made[0].steps == 20
    assert made[0].candidates == sorted({1, max(1, cores() - 1)})  # the HTTP side keeps one
    monkeypatch.setenv("LSTMGEN_THREADS", "3")
    with TestClient(create_app([trained_run])):
        pass
    assert made[1].candidates == [3]
    lstmgen.threads.use(1)  # as the other tests run (conftest)


# ----- schemathesis: the server keeps its own OpenAPI schema ----------------------------------
def test_openapi_schema_holds(url):
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/health", "/v1/models", "/v1/completions"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def no_5xx_and_as_documented(case):
            if isinstance(case.body, dict) and isinstance(case.body.get("max_tokens"), int):
                case.body["max_tokens"] = min(case.body["max_tokens"], 300)  # keep it quick
            # Limits across fields (min_tokens <= max_tokens <= the server's) are not in the
            # schema: a schema-valid request may be refused, with a 400 and a clear message.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        no_5xx_and_as_documented()


# ----- the page in a real browser -------------------------------------------------------------
def test_page_streams_text_in_a_browser(url, tmp_path):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no chromium and chromedriver here (CI installs them: .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1000,800")
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
        prime = browser.find_element(By.ID, "prime")
        prime.send_keys("The cat ")
        length = browser.find_element(By.ID, "max_tokens")
        length.clear()
        length.send_keys("200")
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda b: len(b.find_element(By.ID, "text").text) >= 150)
        wait.until(lambda b: "chars/s" in b.find_element(By.ID, "status").text)
        browser.save_screenshot(str(tmp_path / "serve-page.png"))
        if os.environ.get("LSTMGEN_PAGE_SCREENSHOT"):  # e.g. docs/serve-page.png for the README
            browser.save_screenshot(os.environ["LSTMGEN_PAGE_SCREENSHOT"])
        assert browser.find_element(By.ID, "shown-prime").text.strip() == "The cat"
    finally:
        browser.quit()


# ----- the command ----------------------------------------------------------------------------
def test_help_and_import_load_neither_torch_nor_fastapi():
    code = (
        "import sys, lstmgen\n"
        "from lstmgen.cli import main\n"
        "for args in (['--help'], ['serve', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "--max-batch" in done.stdout and "LSTMGEN_API_KEY" in done.stdout
    assert done.stdout.strip().endswith("[]")


def test_serve_bad_run_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lstmgen", "serve", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("lstmgen: error:")


def test_sigterm_finishes_streams_in_flight_and_exits_0(trained_run):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "lstmgen", "serve", str(trained_run), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "page: http://127.0.0.1:" in server.stderr.readline() + server.stderr.readline()
        body = {"prompt": "The", "max_tokens": 300, "stream": True}
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", json=body) as reply:
            chunks = reply.iter_text()
            first = next(chunks)
            server.send_signal(signal.SIGTERM)
            raw = first + "".join(chunks)
        assert raw.endswith("data: [DONE]\n\n")
        assert server.wait(30) == 0
        assert "server stopped" in server.stderr.read()
    finally:
        server.kill()
        server.wait()
