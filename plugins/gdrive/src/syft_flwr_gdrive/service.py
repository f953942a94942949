"""The real ``googleapiclient`` Drive v3 client, built offline, one HTTP connection per thread.

The client is built from the discovery document the library ships, so no network is needed to
build it. To use another server (the fake, a proxy) the document's ``rootUrl`` is rewritten:
the ``api_endpoint`` client option alone is not enough, because upload URLs are derived from
``rootUrl`` and would keep pointing at Google.

``httplib2.Http`` is not thread-safe, and the transport calls Drive from the strategy's thread
pool, its poller and its serving loop at once; so the resource is built once and every request
is executed with a thread-local authorized ``Http``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import google_auth_httplib2  # type: ignore[import-untyped]
from google.auth.credentials import Credentials
from googleapiclient.discovery import build_from_document  # type: ignore[import-untyped]
from googleapiclient.discovery_cache import get_static_doc  # type: ignore[import-untyped]
from googleapiclient.http import build_http  # type: ignore[import-untyped]

__all__ = ["DriveService"]


def _discovery_document(api_root: str | None) -> dict[str, Any]:
    text = get_static_doc("drive", "v3")
    if text is None:  # pragma: no cover - the library always ships it
        raise RuntimeError("google-api-python-client ships no drive v3 discovery document")
    document: dict[str, Any] = json.loads(text)
    if api_root is not None:
        document["rootUrl"] = api_root
        document["mtlsRootUrl"] = api_root
        document["baseUrl"] = api_root + document["servicePath"]
    return document


class DriveService:
    """A Drive v3 resource plus per-thread authorized HTTP.

    :param credentials: whose requests these are.
    :param api_root: the API root URL, ``None`` for Google's.
    :param timeout: socket timeout of each request, in seconds.
    """

    def __init__(self, credentials: Credentials, api_root: str | None, timeout: float) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self._local = threading.local()
        self.resource: Any = build_from_document(_discovery_document(api_root), http=self.http())

    def http(self) -> google_auth_httplib2.AuthorizedHttp:
        """This thread's authorized HTTP object (created on first use)."""
        http: google_auth_httplib2.AuthorizedHttp | None = getattr(self._local, "http", None)
        if http is None:
            raw = build_http()  # leaves 308 alone: resumable uploads answer with it
            raw.timeout = self.timeout
            http = google_auth_httplib2.AuthorizedHttp(self.credentials, http=raw)
            self._local.http = http
        return http

    def execute(self, request: Any) -> Any:
        """Execute a built request once on this thread's HTTP (retries are the caller's)."""
        return request.execute(http=self.http(), num_retries=0)
