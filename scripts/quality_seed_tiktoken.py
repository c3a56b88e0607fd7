#!/usr/bin/env python3
"""Seeds tiktoken's cache with o200k_base and cl100k_base rebuilt from the rank tables the
plugin embeds (plugin/src/tokens/data/*.ranks, see generate.py there), so the Python peer counts
tokens offline. tiktoken checks the file's SHA-256 against the published one, so a wrong rebuild
fails loudly instead of counting differently.

Usage: quality_seed_tiktoken.py CACHE_DIR   (then export TIKTOKEN_CACHE_DIR=CACHE_DIR)
"""
import base64
import hashlib
import os
import struct
import sys

URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def main() -> None:
    cache = sys.argv[1]
    os.makedirs(cache, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.path.join(here, "..", "plugin", "src", "tokens", "data")
    for name, url in URLS.items():
        with open(os.path.join(data, f"{name}.ranks"), "rb") as f:
            raw = f.read()
        if raw[:8] != b"HRBPE\x00\x00\x01":
            raise SystemExit(f"{name}: not a ranks table")
        (count,) = struct.unpack("<I", raw[8:12])
        at, lines = 12, []
        for rank in range(count):
            n = raw[at]
            lines.append(base64.b64encode(raw[at + 1 : at + 1 + n]) + b" " + str(rank).encode() + b"\n")
            at += 1 + n
        body = b"".join(lines)
        path = os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())
        with open(path, "wb") as f:
            f.write(body)
        print(name, count, "tokens, sha256", hashlib.sha256(body).hexdigest()[:16], "->", path)


if __name__ == "__main__":
    main()
