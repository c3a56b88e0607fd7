#!/usr/bin/env python3
"""Runs the Python peer (headroom-ai from PyPI) on every case of the real corpus, the way a
client of it would: `headroom.compress()` on a chat turn (the user's question, an assistant tool
call, the tool output), and writes the tool output it would send to OUT_DIR/<file>.out.

The cases (file and question) are read from plugin/src/pipeline/real_corpus.rs, so both sides
run the same inputs. The peer's default `protect_recent=4` leaves the last four messages alone
(the tool output is the latest message of the turn), so it also runs with `protect_recent=0`;
OUT_DIR/<file>.out is whichever of the two sends fewer tokens (the peer's best).
Usage: quality_peer.py OUT_DIR
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")


def cases():
    source = open(os.path.join(ROOT, "plugin", "src", "pipeline", "real_corpus.rs")).read()
    for m in re.finditer(r'Case \{\s*file: "([^"]+)",\s*ty: Type::\w+,\s*query: "([^"]+)",', source):
        yield m.group(1), m.group(2)


def main() -> None:
    import tiktoken
    from headroom import compress

    encoding = tiktoken.get_encoding("o200k_base")

    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for path, query in cases():
        text = open(os.path.join(ROOT, "tests", "corpus", "real", path), encoding="utf-8").read()
        messages = [
            {"role": "user", "content": query},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": text},
        ]
        outs = []
        for settings in ({}, {"protect_recent": 0}):
            result = compress(messages, model="gpt-4o", **settings)
            out = result.messages[2]["content"]
            if not isinstance(out, str):
                out = json.dumps(out)
            outs.append((len(encoding.encode(out, disallowed_special=())), out))
        out = min(outs, key=lambda pair: pair[0])[1]
        with open(os.path.join(out_dir, path.replace("/", "__") + ".out"), "w", encoding="utf-8") as f:
            f.write(out)
        print(f"{path}: {len(text)} -> {len(out)} bytes", flush=True)


if __name__ == "__main__":
    main()
