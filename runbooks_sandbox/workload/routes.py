"""The API surface each simulated Veza service answers, with small realistic bodies.

Shared by the workload (what to serve) and the load generator (what to request).
"""
from __future__ import annotations

import json

__all__ = ["API_ROUTES", "api_body", "routes_for"]

# Route -> (content type, body). Bodies are fixed: the sandbox tests behaviour, not data.
_JSON = "application/json"
_TRACKS = [
    {"id": 101, "title": "Night Drive", "artist": "Mira Vale", "duration_s": 214},
    {"id": 102, "title": "Low Tide", "artist": "The Harbour", "duration_s": 187},
    {"id": 103, "title": "Paper Lanterns", "artist": "Sol Okafor", "duration_s": 243},
]
_HLS = (
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n"
    "#EXTINF:6.0,\nsegment0.ts\n#EXTINF:6.0,\nsegment1.ts\n#EXT-X-ENDLIST\n"
)
_INDEX = (
    "<!doctype html><html><head><title>Veza</title></head>"
    "<body><div id=\"root\">Veza</div></body></html>\n"
)

API_ROUTES: dict[str, dict[str, tuple[str, bytes]]] = {
    "veza-backend-api": {
        "/api/v1/tracks": (_JSON, json.dumps({"items": _TRACKS, "total": len(_TRACKS)}).encode()),
        "/api/v1/users/me": (_JSON, json.dumps({"id": 7, "username": "oncall", "plan": "premium"}).encode()),
        "/api/v1/playlists": (_JSON, json.dumps({"items": [{"id": 12, "name": "Focus", "tracks": [101, 103]}]}).encode()),
    },
    "veza-chat-server": {
        "/api/v1/rooms": (_JSON, json.dumps({"items": [{"id": "general", "members": 42}, {"id": "releases", "members": 9}]}).encode()),
    },
    "veza-stream-server": {
        "/hls/index.m3u8": ("application/vnd.apple.mpegurl", _HLS.encode()),
    },
    "veza-frontend": {
        "/": ("text/html; charset=utf-8", _INDEX.encode()),
    },
}


def routes_for(service: str) -> list[str]:
    """The API routes of a service ("/" for a service the sandbox does not know)."""
    return list(API_ROUTES.get(service, {"/": ("", b"")}))


def api_body(service: str, route: str) -> tuple[str, bytes] | None:
    """(content type, body) of an API route, or None when the service has no such route."""
    return API_ROUTES.get(service, {}).get(route)
