"""Shared helpers for the Baileys interop tests (vector loading, JSON <-> Node, node runner).

Vectors live in ``tests/vectors/`` and are produced by ``tests/interop/gen_vectors.mjs`` with the
pinned ``baileys@7.0.0-rc14``; tests marked ``baileys`` additionally run node scripts live.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from evolink.wire.binary import Node

INTEROP_DIR = Path(__file__).resolve().parent
VECTORS_DIR = INTEROP_DIR.parent / "vectors"
NODE_TIMEOUT = 120.0

JsonNode = dict[str, Any]


@cache
def load_vectors(name: str) -> dict[str, Any]:
    """Parsed ``tests/vectors/<name>.json`` (cached; treat as read-only)."""
    with (VECTORS_DIR / f"{name}.json").open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def pattern_bytes(length: int, mul: int, add: int) -> bytes:
    """The generator's compact payload: ``byte[i] = (i * mul + add) mod 256`` (period 256)."""
    period = bytes((i * mul + add) & 0xFF for i in range(256))
    reps = length // 256 + 1
    return (period * reps)[:length]


def b64d(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def json_to_node(j: JsonNode) -> Node:
    """A vector's input node (JSON form written by ``vectors_common.mjs``) as an evolink ``Node``."""
    content_json = j["content"]
    content: bytes | str | list[Node] | None
    if content_json is None:
        content = None
    elif "text" in content_json:
        content = content_json["text"]
    elif "bytes_b64" in content_json:
        content = b64d(content_json["bytes_b64"])
    elif "bytes_pattern" in content_json:
        p = content_json["bytes_pattern"]
        content = pattern_bytes(p["length"], p["mul"], p["add"])
    elif "nodes" in content_json:
        content = [json_to_node(c) for c in content_json["nodes"]]
    else:
        raise ValueError(f"unknown content form {sorted(content_json)}")
    return Node(j["tag"], dict(j["attrs"]), content)


def node_to_json(node: Node, inline_limit: int) -> JsonNode:
    """An evolink ``Node`` in the JSON form the generator uses for Baileys' decoder output."""
    content = node.content
    content_json: dict[str, Any] | None
    if content is None:
        content_json = None
    elif isinstance(content, str):
        content_json = {"text": content}
    elif isinstance(content, bytes | bytearray):
        raw = bytes(content)
        if len(raw) > inline_limit:
            content_json = {"bytes_sha256": hashlib.sha256(raw).hexdigest(), "length": len(raw)}
        else:
            content_json = {"bytes_b64": base64.b64encode(raw).decode("ascii")}
    elif isinstance(content, list):
        content_json = {"nodes": [node_to_json(c, inline_limit) for c in content]}
    else:
        raise TypeError(f"unexpected content type {type(content).__name__}")
    return {"tag": node.tag, "attrs": dict(node.attrs), "content": content_json}


def node_to_input_json(node: Node) -> JsonNode:
    """An evolink ``Node`` as input JSON for the node helper scripts (bytes always inline)."""
    return node_to_json(node, inline_limit=sys.maxsize)


@cache
def node_binary() -> str | None:
    return shutil.which("node")


def require_baileys() -> str:
    """Path of ``node`` with the pinned peer installed.

    Skips only when node itself is absent; with node present, a missing peer is a failure (a
    broken install must not silently turn the interop checks off).
    """
    node = node_binary()
    if node is None:
        pytest.skip("node is not installed (needed to run the pinned Baileys peer)")
    if not (INTEROP_DIR / "node_modules" / "baileys" / "package.json").is_file():
        pytest.fail("the pinned Baileys peer is not installed: run `cd tests/interop && npm ci`")
    return node


def run_node_json(script: str, payload: Any) -> Any:
    """Run ``tests/interop/<script>`` with JSON on stdin and parse its JSON stdout."""
    node = require_baileys()
    proc = subprocess.run(
        [node, str(INTEROP_DIR / script)],
        input=json.dumps(payload).encode("utf-8"),
        capture_output=True,
        cwd=INTEROP_DIR,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{script} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}"
        )
    return json.loads(proc.stdout)
