#!/usr/bin/env python3
"""Builds the fuzz targets' seed inputs.

    fuzz/make_seeds.py                     # writes fuzz/seeds/<target>/ (committed, small)
    fuzz/make_seeds.py --fixtures DIR      # also fills fuzz/corpus/<target>/ (not committed)
                                           # from upstream Headroom's fixtures in DIR

Seeds come from the repository's own test bodies (tests/scenarios, plugin/tests/data) and
small hand-written requests whose tool outputs are each kind the pipeline compresses (JSON
arrays, logs, search results, diffs, text). Upstream's fixtures are Apache-2.0 but are not
copied into the project (DESIGN.md): with --fixtures their inputs only seed the local corpus.

Usage inputs carry a 4-byte header (fuzz/src/lib.rs, `usage_input`): byte 0 picks the API
(0 chat, 1 responses, 2 anthropic), bytes 1..3 seed the split points.
"""

import argparse
import glob
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCEN = os.path.join(ROOT, "tests", "scenarios")
API_OF_PATH = {"/v1/chat/completions": 0, "/v1/responses": 1, "/v1/messages": 2}
COMPRESS_TARGET = {0: "compress_openai_chat", 1: "compress_openai_responses", 2: "compress_anthropic"}


def put(base, target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(base, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def body_of(parts):
    out = b""
    for p in parts or []:
        if isinstance(p, dict) and "file" in p:
            with open(os.path.join(SCEN, p["file"]), "rb") as f:
                out += f.read()
        elif isinstance(p, str):
            out += p.encode()
    return out


def usage_header(api, k):
    return bytes([api, (k * 37 + 11) & 0xFF, (k * 101 + 7) & 0xFF, (k * 13 + 200) & 0xFF])


# --- tool outputs of each kind, small ------------------------------------------------------

def tool_outputs():
    rows = [{"id": i, "level": "error" if i == 7 else "info", "msg": f"request {i} ok",
             "latency_ms": 10 + i} for i in range(12)]
    yield json.dumps(rows)
    yield json.dumps({"results": rows[:8], "total": 8})
    yield "\n".join(
        [f"2026-01-01T00:00:{i:02d}Z INFO worker {i % 3} processed batch {i}" for i in range(20)]
        + ["2026-01-01T00:00:21Z ERROR worker 1 failed: connection refused",
           "Traceback (most recent call last):", '  File "app.py", line 3, in <module>',
           "ValueError: bad input"])
    yield "\n".join(f"src/lib/mod{i % 4}.rs:{10 * i}:    let value = compute({i});" for i in range(30))
    yield ("diff --git a/src/main.rs b/src/main.rs\nindex 1111111..2222222 100644\n"
           "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1,9 +1,9 @@\n"
           + "".join(f" line {i}\n" for i in range(4)) + "-old line\n+new line\n"
           + "".join(f" line {i}\n" for i in range(5, 9)))
    yield " ".join(f"Sentence {i} explains how the system reconciles state." for i in range(25))
    yield "FAILED test_a\nError: assertion failed\nerror: 2 errors\n" * 3
    yield "<html><body>" + "<div class='x'>item</div>" * 10 + "</body></html>"


def chat_request(output, tool="list_items", parts=False):
    content = [{"type": "text", "text": output}] if parts else output
    return json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "find the error"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": tool, "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": content}]})


def responses_request(output, tool="list_items"):
    return json.dumps({"model": "gpt-4.1", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "find the error"}]},
        {"type": "function_call", "call_id": "c1", "name": tool, "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": output}]})


def anthropic_request(output, tool="list_items", parts=False, is_error=False):
    content = [{"type": "text", "text": output}] if parts else output
    result = {"type": "tool_result", "tool_use_id": "tu_1", "content": content}
    if is_error:
        result["is_error"] = True
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [
        {"role": "user", "content": "find the error"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": tool, "input": {}}]},
        {"role": "user", "content": [result, {"type": "text", "text": "why?"}]}]})


def requests_for(output):
    yield 0, chat_request(output)
    yield 0, chat_request(output, parts=True)
    yield 1, responses_request(output)
    yield 2, anthropic_request(output)
    yield 2, anthropic_request(output, parts=True, is_error=True)


JSON_EDGE = [
    "{}", "[]", "0", "-0.5e+10", "1e400", '"\\ud83d\\ude80 \\u00e9\\n\\t\\"\\\\\\/"', '"\\ud800"',
    "[1,[2,[3,[4,{}]]]]", ' {"a" : [ true , false , null ] , "a" : 1 } ', '{"\\u0061":1,"a":2}',
    "[" * 70 + "]" * 70, '"\u00e9\u65e5\U0001f680"', "[1 2]", '{"a":1,}', "01", "-", '"\x01"',
]

SAVINGS_EDGE = [
    '{"schema_version":3,"lifetime":{"requests":1,"tokens_saved":5},"history":[],"projects":{}}',
    '{"lifetime":{"requests":2},"history":[["2026-01-02T00:00:00",50,0.5,10,0.1],'
    '{"timestamp":"2026-01-01T00:00:00Z","provider":"openai","model":"gpt-4o","total_tokens_saved":20}],'
    '"display_session":{"requests":1,"started_at":"2026-01-01T00:00:00Z","last_activity_at":"2026-01-02T00:00:00Z"},'
    '"projects":{"web":{"requests":2,"tokens_saved":3}}}',
    '{"lifetime":null,"history":null}', "[]", '{"lifetime":[]}',
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", help="upstream Headroom fixtures: seed fuzz/corpus/ too")
    args = ap.parse_args()
    seeds = os.path.join(ROOT, "fuzz", "seeds")

    k = 0
    for f in sorted(glob.glob(os.path.join(SCEN, "*.scenario.json"))):
        d = json.load(open(f))
        req, up = d.get("request") or {}, d.get("upstream") or {}
        api = API_OF_PATH.get((req.get("path") or "").split("?")[0])
        rb = body_of(req.get("body"))
        if rb:
            put(seeds, "json_span", rb)
            if api is not None:
                put(seeds, COMPRESS_TARGET[api], rb)
        ub = body_of(up.get("body"))
        if ub and api is not None:
            ctype = dict((h[0].lower(), h[1]) for h in up.get("headers", [])).get("content-type", "")
            target = "usage_sse" if "event-stream" in ctype else "usage_json"
            k += 1
            put(seeds, target, usage_header(api, k) + ub)
            if target == "usage_json":
                put(seeds, "json_span", ub)
    for output in tool_outputs():
        for api, body in requests_for(output):
            put(seeds, COMPRESS_TARGET[api], body)
    put(seeds, "compress_openai_chat", chat_request(next(tool_outputs()), tool="Read"))
    for text in JSON_EDGE:
        put(seeds, "json_span", text)
    with open(os.path.join(ROOT, "plugin", "tests", "data", "peer_proxy_savings.json"), "rb") as f:
        peer = f.read()
    put(seeds, "savings_file", peer)
    put(seeds, "json_span", peer)
    for text in SAVINGS_EDGE:
        put(seeds, "savings_file", text)
    # Usage bodies the scenarios lack: Responses SSE, a usage-only chat chunk with \r line ends.
    responses_sse = (
        'event: response.created\ndata: {"type":"response.created","response":{"model":"gpt-4.1","usage":null}}\n\n'
        'event: response.completed\ndata: {"type":"response.completed","response":{"model":"gpt-4.1",'
        '"usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":64},"output_tokens":5}}}\n\n')
    put(seeds, "usage_sse", usage_header(1, 99) + responses_sse.encode())
    put(seeds, "usage_sse", usage_header(0, 98) + b'\xef\xbb\xbf: c\r\ndata: {"choices":[],"usage":{"prompt_tokens":3}}\r\r'
        b'data: [DONE]\r\n\r\n')
    put(seeds, "usage_json", usage_header(1, 97) + b'{"model":"gpt-4.1","usage":{"input_tokens":10,"output_tokens":2,'
        b'"input_tokens_details":{"cached_tokens":4}}}')

    if args.fixtures:
        corpus = os.path.join(ROOT, "fuzz", "corpus")
        for f in glob.glob(os.path.join(args.fixtures, "**", "*.json"), recursive=True):
            raw = open(f, "rb").read()
            if len(raw) < 64 * 1024:
                put(corpus, "json_span", raw)
            try:
                d = json.loads(raw)
            except ValueError:
                continue
            if "messages" in raw.decode("utf-8", "replace")[:4096] and isinstance(d, dict) and "messages" in d:
                put(corpus, "compress_anthropic", raw)
            inp = d.get("input") if isinstance(d, dict) else None
            if isinstance(inp, dict):
                inp = inp.get("content")
            if isinstance(inp, str) and 0 < len(inp) < 32 * 1024:
                for api, body in requests_for(inp):
                    put(corpus, COMPRESS_TARGET[api], body)
        peer = "/work/shared/peer-samples/proxy_savings.json"
        if os.path.exists(peer):
            put(corpus, "savings_file", open(peer, "rb").read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
