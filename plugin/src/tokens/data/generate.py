#!/usr/bin/env python3
"""Builds the rank tables that `tokens::bpe` embeds from tiktoken's published rank files.

Usage: generate.py DIR   (DIR holds cl100k_base.tiktoken and o200k_base.tiktoken, e.g. the
`assets/` folder of the tiktoken-rs crate or tiktoken's own cache). Writes `<name>.ranks` next to
this script.

Format (`.ranks`): the 8 bytes `HRBPE\\0\\0\\1`, the token count as u32 little-endian, then every
token in rank order as one length byte (1..=255) followed by its bytes. Rank = position. The
tiktoken files list ranks 0..N-1 in order; this script checks it.
"""
import base64
import os
import struct
import sys

MAGIC = b"HRBPE\x00\x00\x01"

def main() -> None:
    src = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("cl100k_base", "o200k_base"):
        tokens = []
        with open(os.path.join(src, f"{name}.tiktoken"), "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                b64, rank = line.split()
                if int(rank) != len(tokens):
                    raise SystemExit(f"{name}: rank {rank} out of order")
                token = base64.b64decode(b64)
                if not 1 <= len(token) <= 255:
                    raise SystemExit(f"{name}: token {rank} has length {len(token)}")
                tokens.append(token)
        out = bytearray(MAGIC)
        out += struct.pack("<I", len(tokens))
        for token in tokens:
            out.append(len(token))
            out += token
        with open(os.path.join(here, f"{name}.ranks"), "wb") as f:
            f.write(out)
        print(name, len(tokens), "tokens,", len(out), "bytes")

if __name__ == "__main__":
    main()
