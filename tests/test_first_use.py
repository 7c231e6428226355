"""What a newcomer meets first (issue 34): the server's answers to a chat client and a browser,
and the small print of training and generating."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_chat_completions_say_that_this_server_serves_completions(trained_run):
    from fastapi.testclient import TestClient

    from lstmgen.serve import create_app

    with TestClient(create_app([trained_run])) as http:
        reply = http.post("/v1/chat/completions", json={"messages": []})
        error = reply.json()["error"]
        assert reply.status_code == 404 and error["type"] == "not_found_error"
        assert "/v1/completions" in error["message"] and "completions only" in error["message"]


@pytest.mark.parametrize("page", ["serve/static/index.html", "export/static/index.html"])
def test_the_pages_name_their_icon_so_browsers_ask_for_no_favicon(page):
    html = (ROOT / "src" / "lstmgen" / page).read_text(encoding="utf-8")
    assert '<link rel="icon"' in html
