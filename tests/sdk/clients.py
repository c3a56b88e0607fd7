"""A new user's first calls through Headroom, with the official SDKs.

Points the `openai` and `anthropic` Python SDKs at HEADROOM_BASE_URL and makes a normal and a
streaming call with each. Exits non-zero (with the reason) if any answer is not what the test
upstream sent.
"""
import os
import sys

import anthropic
import openai

BASE = os.environ["HEADROOM_BASE_URL"]
EXPECTED = "Hello from the test upstream."


def check(label, text):
    if text != EXPECTED:
        sys.exit(f"{label}: got {text!r}, expected {EXPECTED!r}")
    print(f"ok {label}")


oa = openai.OpenAI(base_url=f"{BASE}/v1", api_key="sk-test-openai", max_retries=0, timeout=30)
chat = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
check("openai chat", chat.choices[0].message.content)
if chat.usage.prompt_tokens != 12:
    sys.exit(f"openai chat: usage {chat.usage}")

stream = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
check("openai chat stream", "".join(c.choices[0].delta.content or "" for c in stream if c.choices))

an = anthropic.Anthropic(base_url=BASE, api_key="sk-ant-test", max_retries=0, timeout=30)
msg = an.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
check("anthropic messages", msg.content[0].text)

with an.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
    check("anthropic messages stream", "".join(s.text_stream))
