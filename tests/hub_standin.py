"""A local stand-in for the Hugging Face Hub HTTP API: it answers the calls ``huggingface_hub`` makes to create a
dataset repository and commit files (every file as a regular, inline upload), and records each request (method,
path with query, headers, body) so a test can check what was sent. No hub is reachable from the test machines.

Use as a context manager; it stops its server thread on exit::

    with HubStandIn() as hub:
        env["HF_ENDPOINT"] = hub.url
        ...
    hub.requests  # [{"method", "path", "headers", "body"}]
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMIT_OID = "0123456789abcdef0123456789abcdef01234567"


class HubStandIn:
    def __init__(self, models: dict[str, dict[str, bytes]] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.models = models or {}  # model repositories to serve: {"org/name": {filename: content}}
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _record(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                standin.requests.append({"method": self.command, "path": self.path,
                                         "headers": dict(self.headers.items()), "body": body})
                return body

            def _json(self, obj: Any, status: int = 200) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = self._record()
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    req = json.loads(body or b"{}")
                    self._json({"url": f"{standin.url}/datasets/{req.get('organization')}/{req.get('name')}"})
                elif path == "/api/validate-yaml":  # the dataset card's front matter
                    self._json({"errors": [], "warnings": []})
                elif "/preupload/" in path:
                    files = json.loads(body)["files"]
                    self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                          for f in files]})
                elif "/commit/" in path:
                    repo = path.split("/api/datasets/")[1].split("/commit/")[0]
                    self._json({"commitUrl": f"{standin.url}/datasets/{repo}/commit/{COMMIT_OID}",
                                "commitOid": COMMIT_OID, "success": True})
                else:
                    self._json({"error": f"stand-in: no route {path}"}, status=404)

            def do_GET(self) -> None:  # noqa: N802
                self._record()
                path = self.path.split("?")[0]
                for repo, files in standin.models.items():
                    if path.startswith(f"/api/models/{repo}/tree/"):  # the file listing
                        return self._json([{"type": "file", "path": f, "size": len(d),
                                            "oid": hashlib.sha1(d).hexdigest()} for f, d in sorted(files.items())])
                    if path.startswith(f"/api/models/{repo}"):  # repository info: its commit and file list
                        return self._json({"id": repo, "sha": COMMIT_OID,
                                           "siblings": [{"rfilename": f} for f in sorted(files)]})
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix):  # /<repo>/resolve/<revision>/<filename>
                        name = path[len(prefix):].split("/", 1)[1]
                        if name in files:
                            data = files[name]
                            self.send_response(200)
                            self.send_header("Content-Length", str(len(data)))
                            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                            self.send_header("X-Repo-Commit", COMMIT_OID)
                            self.end_headers()
                            if self.command == "GET":
                                self.wfile.write(data)
                            return None
                return self._json({"error": f"stand-in: no route {self.path}"}, status=404)

            do_HEAD = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def commit_lines(self) -> list[dict[str, Any]]:
        """The NDJSON lines of the commit request(s): header, then one per file."""
        out = []
        for r in self.requests:
            if "/commit/" in r["path"]:
                out += [json.loads(line) for line in r["body"].decode().splitlines() if line.strip()]
        return out
