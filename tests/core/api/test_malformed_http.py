"""Requests too malformed for aiohttp's parser (over-long URL or header, broken request line) get the
error envelope, and one rate-limited WARNING without a traceback instead of an ERROR per request."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from aetherlens.api.server import LOG_BURST

from .conftest import Api, MakeApi

MALFORMED = {
    "long_url": b"GET /api/v1/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "long_header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
    "bad_request_line": b"THIS IS NOT HTTP\r\n\r\n",
}


async def _raw(api: Api, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a fresh TCP connection to the real server; return status, headers, body."""
    reader, writer = await asyncio.open_connection(api.client.server.host, api.client.server.port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=20)  # the server closes after it
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_request_gets_the_envelope_and_a_warning(
    make_api: MakeApi, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    api = await make_api()
    caplog.set_level(logging.DEBUG)
    status, headers, body = await _raw(api, MALFORMED[case])
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    error = orjson.loads(body)["error"]
    assert error["code"] == "bad_request" and error["message"].startswith("malformed HTTP request")

    records = [r for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING and records[0].name == "aetherlens.api"
    assert records[0].exc_info is None
    # Nothing at ERROR, and no traceback anywhere (aiohttp's own handler logged both).
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r for r in caplog.records if r.exc_info] == []


async def test_malformed_requests_cannot_flood_the_log(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    api = await make_api()
    caplog.set_level(logging.WARNING)
    sent = 3 * LOG_BURST
    for _ in range(sent):
        status, _, _ = await _raw(api, MALFORMED["bad_request_line"])
        assert status == 400  # every one is answered ...
    records = [r for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert 1 <= len(records) <= LOG_BURST + 1  # ... but the log takes a bounded burst
    assert len(records) < sent
