"""Writes the request bodies of the scenarios and, independently of the filter, what the
upstream must receive: the same bytes with each pretty-printed JSON tool output minified
(whitespace outside strings removed, nothing else changed) and re-encoded as a JSON string.

Run from this folder: python3 make_bodies.py
"""
import json

def minify(text):
    out, in_str, esc = [], False, False
    for ch in text:
        if in_str:
            out.append(ch)
            if esc: esc = False
            elif ch == "\\": esc = True
            elif ch == '"': in_str = False
        elif ch == '"':
            in_str = True; out.append(ch)
        elif ch not in " \t\r\n":
            out.append(ch)
    return "".join(out)

def enc(s):
    return json.dumps(s, ensure_ascii=False)

# Numbers, escapes and key order that a parse-and-reserialise round trip would change. Each tool
# output is distinct (`tag`), because the filter replays what it sent for an output it has seen
# before, and above the pipeline's 512-byte floor; two items are below the array-reduction floor,
# so the pipeline's only change is the lossless compaction this script reproduces.
def records(tag):
    note = ("release notes for " + tag + ": the quick brown fox jumps over the lazy dog; ") * 3
    return ('{\n  "items": [\n    {\n      "id": 1,\n      "price": 1.50,\n      "big": 1e3,\n'
            '      "name": "caf\\u00e9 \\"quoted\\"",\n      "zeta": true,\n      "alpha": null,\n'
            '      "note": "' + note + '"\n    },\n    {\n      "id": 2,\n      "price": 2.00,\n'
            '      "big": -0.0,\n      "name": "tab\\there",\n      "zeta": false,\n      "alpha": [ ],\n'
            '      "note": "' + note.upper() + '"\n    }\n  ],\n  "total": 2\n}')

log_text = "2026-11-27 INFO started\n2026-11-27 ERROR failed"

def write(name, prefix_parts, tool_values, suffix):
    """prefix_parts/suffix are raw JSON text; tool_values are (text, compress?)"""
    req, up = prefix_parts[0], prefix_parts[0]
    for (value, between) in zip(tool_values, prefix_parts[1:] + [suffix]):
        req += enc(value) + between
        # The pipeline leaves tool outputs under 512 bytes (of text) intact.
        big = len(value.encode()) >= 512
        minified = minify(value) if big and value.strip().startswith(("{", "[")) else value
        up += enc(minified) + between
    open(name + ".request.json", "w").write(req)
    open(name + ".upstream.json", "w").write(up)
    json.loads(req); json.loads(up)

# OpenAI chat: a tool output (pretty JSON) between other messages; an assistant message with
# pretty JSON that must stay as is; odd spacing outside the tool output that must survive.
write("openai_tool", [
    '{"model": "gpt-4o-mini",  "messages":[{"role":"system","content":"You are terse."},'
    '{"role":"assistant","content":' + enc(records("assistant")) + ',"tool_calls":[{"id":"call_1","type":"function","function":{"name":"list","arguments":"{}"}}]},'
    '{"role":"tool","tool_call_id":"call_1","content":',
    '},\n  {"role":"tool","tool_call_id":"call_2","content":',
], [records("chat"), log_text], '}, {"role":"user","content":"summarise"}], "temperature": 0.2}')

# Anthropic: tool_result with string content and with text parts; a text block with pretty JSON
# outside a tool_result stays.
write("anthropic_tool", [
    '{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":[{"type":"text","text":' + enc(records("user")) + '}]},'
    '{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"list","input":{}}]},'
    '{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":',
    '},{"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":',
], [records("string"), records("parts")], '}]}]}]}')

# OpenAI Responses: function_call_output.output.
write("responses_tool", [
    '{"model":"gpt-4.1","input":[{"role":"user","content":"list items"},'
    '{"type":"function_call","call_id":"c1","name":"list","arguments":"{}"},'
    '{"type":"function_call_output","call_id":"c1","output":',
], [records("responses")], '}]}')
