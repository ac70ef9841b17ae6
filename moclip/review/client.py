"""Label Studio's REST API, the few calls the review loop needs (httpx; checked against label-studio 1.23).

Authentication: a personal access token (a JWT, Label Studio's default since 1.18) is exchanged for a short-lived
access token (``POST /api/token/refresh``) sent as ``Bearer``; any other token is a legacy one, sent as ``Token``
(organisations must have legacy tokens enabled).

Projects are found by their exact title (Label Studio's filter matches substrings). Tasks are imported in chunks
well under Label Studio's documented limit (250,000 tasks or 200 MB per request), and never twice: a task whose
``data.moclip.item_id`` is in the project already is left out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

CHUNK_TASKS = 5000  # tasks per import request
CHUNK_BYTES = 50 << 20  # and at most this much JSON
PAGE = 500


class LabelStudioError(RuntimeError):
    """A Label Studio call failed: the message names the call, the status and what the server said."""


class LabelStudio:
    def __init__(self, url: str, token: str, timeout_s: float = 120.0):
        if not token:
            raise LabelStudioError("no Label Studio token: give --token (or MOCLIP_LABEL_STUDIO_TOKEN), a personal "
                                   "access token from Account & Settings")
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s)
        self._token, self._access, self._access_at = token, None, 0.0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self) -> dict[str, str]:
        if self._token.count(".") != 2:  # not a JWT: a legacy token
            return {"Authorization": f"Token {self._token}"}
        if self._access is None or time.monotonic() - self._access_at > 240:  # access tokens live ~5 minutes
            r = self.http.post("/api/token/refresh/", json={"refresh": self._token})
            if r.status_code != 200:
                raise LabelStudioError(f"{self.url}: the personal access token was refused ({r.status_code}: "
                                       f"{r.text[:300]})")
            self._access, self._access_at = r.json()["access"], time.monotonic()
        return {"Authorization": f"Bearer {self._access}"}

    def call(self, method: str, path: str, **kw: object) -> httpx.Response:
        try:
            r = self.http.request(method, path, headers=self._headers(), **kw)
        except httpx.HTTPError as e:
            raise LabelStudioError(f"{method} {self.url}{path}: {type(e).__name__}: {e}") from e
        if r.status_code >= 400:
            hint = " (a legacy token? enable legacy tokens in the organisation, or use a personal access token)" \
                if r.status_code == 401 else ""
            raise LabelStudioError(f"{method} {self.url}{path}: {r.status_code}: {r.text[:500]}{hint}")
        return r

    def find_project(self, title: str) -> dict | None:
        """The project titled exactly ``title`` (None when there is none)."""
        page = 1
        while True:
            r = self.call("GET", "/api/projects/", params={"title": title, "page": page, "page_size": 100}).json()
            for p in r.get("results", []):
                if p.get("title") == title:
                    return p
            if not r.get("next"):
                return None
            page += 1

    def project(self, title: str, config: str) -> tuple[int, bool]:
        """The project titled ``title`` (created with ``config`` when there is none; its config updated when it
        differs). Returns (its id, whether it was created)."""
        p = self.find_project(title)
        if p is not None:
            if (p.get("label_config") or "").strip() != config.strip():
                self.call("PATCH", f"/api/projects/{p['id']}/", json={"label_config": config})
            return int(p["id"]), False
        made = self.call("POST", "/api/projects/", json={"title": title, "label_config": config}).json()
        return int(made["id"]), True

    def tasks(self, project: int) -> Iterator[dict]:
        """Every task of a project (its data; not its annotations)."""
        page = 1
        while True:
            try:
                r = self.call("GET", "/api/tasks/", params={"project": project, "page": page, "page_size": PAGE})
            except LabelStudioError as e:
                if ": 404:" in str(e):  # past the last page
                    return
                raise
            got = r.json().get("tasks", [])
            yield from got
            if len(got) < PAGE:
                return
            page += 1

    def item_ids(self, project: int) -> set[str]:
        """The moclip items a project has tasks for."""
        out = set()
        for t in self.tasks(project):
            info = (t.get("data") or {}).get("moclip")
            if isinstance(info, dict) and info.get("item_id") is not None:
                out.add(str(info["item_id"]))
        return out

    def import_tasks(self, project: int, tasks: list[dict]) -> int:
        """Import ``tasks`` in chunks; returns how many were imported."""
        n, chunk, size = 0, [], 0
        for t in tasks:
            b = len(json.dumps(t))
            if chunk and (len(chunk) >= CHUNK_TASKS or size + b > CHUNK_BYTES):
                n += self._import(project, chunk)
                chunk, size = [], 0
            chunk.append(t)
            size += b
        if chunk:
            n += self._import(project, chunk)
        return n

    def _import(self, project: int, chunk: list[dict]) -> int:
        r = self.call("POST", f"/api/projects/{project}/import", json=chunk)
        return int(r.json().get("task_count", len(chunk)))

    def local_storage(self, project: int, path: str) -> None:
        """A local-files storage of ``path`` in the project, so its videos are served (made once)."""
        have = self.call("GET", "/api/storages/localfiles", params={"project": project}).json()
        if any(s.get("path") == path for s in have):
            return
        self.call("POST", "/api/storages/localfiles", json={"project": project, "path": path, "use_blob_urls": True,
                                                            "title": "moclip videos"})

    def export(self, project: int) -> list[dict]:
        """Every task of the project with its annotations, in Label Studio's JSON export format."""
        r = self.call("GET", f"/api/projects/{project}/export",
                      params={"exportType": "JSON", "download_all_tasks": "true"})
        return r.json()
