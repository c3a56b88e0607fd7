#!/usr/bin/env python3
"""Rebuilds the excerpts in this folder from their public sources (see PROVENANCE.md).

Usage: build.py PART [ARGS]
  logs LOGHUB_GIT_DIR       loghub samples: the first 800 lines of 11 systems, with their
                            ground-truth event ids (logs/<System>.events.tsv) and templates
  github OCTOKIT_GIT_DIR    every recorded GitHub REST interaction of octokit/fixtures as one array
  diff REQUESTS_GIT_DIR     `git log -p` of psf/requests (40 commits up to v2.32.3) and
                            `git diff v2.31.0 v2.32.0 -- src`
The search, build and JSON outputs produced with local tools: the commands are in PROVENANCE.md."""
import csv
import io
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS = ["Linux", "Apache", "HDFS", "OpenSSH", "Android", "HealthApp", "Mac", "Thunderbird",
        "Windows", "BGL", "Zookeeper"]
LINES = 800
LOGHUB_COMMIT = "dd61d0952749ee7963bde24220d1be5ede023033"
OCTOKIT_COMMIT = "cb8bc9dafc55a3837be4434ff4ba7acf3d9cadde"


def show(git_dir, commit, path):
    return subprocess.run(["git", "--git-dir", git_dir, "show", f"{commit}:{path}"],
                          check=True, capture_output=True).stdout


def logs(git_dir):
    out = os.path.join(HERE, "logs")
    os.makedirs(out, exist_ok=True)
    for name in LOGS:
        raw = show(git_dir, LOGHUB_COMMIT, f"{name}/{name}_2k.log").decode("utf-8")
        lines = raw.splitlines(keepends=True)[:LINES]
        with open(os.path.join(out, f"{name}.log"), "w", newline="") as f:
            f.write("".join(lines))
        rows = list(csv.DictReader(io.StringIO(
            show(git_dir, LOGHUB_COMMIT, f"{name}/{name}_2k.log_structured.csv").decode("utf-8"))))[:LINES]
        templates = {}
        with open(os.path.join(out, f"{name}.events.tsv"), "w") as f:
            f.write("line\tlevel\tevent\n")
            for row in rows:
                level = row.get("Level", "") or ""
                f.write(f"{row['LineId']}\t{level}\t{row['EventId']}\n")
                templates[row["EventId"]] = row["EventTemplate"].replace("\t", " ")
        with open(os.path.join(out, f"{name}.templates.tsv"), "w") as f:
            f.write("event\ttemplate\n")
            for event, template in templates.items():
                f.write(f"{event}\t{template}\n")


def github(git_dir):
    names = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "--name-only",
                            OCTOKIT_COMMIT, "scenarios/api.github.com"],
                           check=True, capture_output=True, text=True).stdout.split()
    calls = []
    for path in sorted(n for n in names if n.endswith("raw-fixture.json")):
        for call in json.loads(show(git_dir, OCTOKIT_COMMIT, path)):
            # The interaction without its request and response headers (most of the bytes).
            calls.append({"scenario": path.split("/")[2],
                          **{k: call[k] for k in ("method", "path", "status", "response") if k in call}})
    os.makedirs(os.path.join(HERE, "json"), exist_ok=True)
    with open(os.path.join(HERE, "json", "github_api_calls.json"), "w") as f:
        json.dump(calls, f, ensure_ascii=False)
        f.write("\n")


def diff(git_dir):
    os.makedirs(os.path.join(HERE, "diff"), exist_ok=True)
    text = subprocess.run(["git", "--git-dir", git_dir, "log", "-p", "-n", "40", "--no-color",
                           "--no-merges", "v2.32.3"], check=True, capture_output=True).stdout
    with open(os.path.join(HERE, "diff", "requests_log_p.diff"), "wb") as f:
        f.write(text)
    text = subprocess.run(["git", "--git-dir", git_dir, "diff", "--no-color", "v2.31.0", "v2.32.0",
                           "--", "src"], check=True, capture_output=True).stdout
    with open(os.path.join(HERE, "diff", "requests_v2.31.0_v2.32.0.diff"), "wb") as f:
        f.write(text)


if __name__ == "__main__":
    {"logs": logs, "github": github, "diff": diff}[sys.argv[1]](*sys.argv[2:])
