"""The media service's Prometheus metrics (labels stay bounded: kinds and reason codes)."""

from __future__ import annotations

from prometheus_client import Counter

media_processed = Counter(
    "media_processed_total", "Customer media handled, by outcome", ["kind", "outcome"]
)
media_failures = Counter(
    "media_failures_total", "Media attempts that failed, by stage and reason", ["stage", "reason"]
)
media_bytes_stored = Counter("media_bytes_stored_total", "Bytes written to the media store")
transcriptions = Counter("media_transcriptions_total", "Transcriptions by outcome", ["outcome"])
voice_replies = Counter("media_voice_replies_total", "Voice replies by outcome", ["outcome"])
voice_fallbacks = Counter(
    "media_voice_fallbacks_total", "Voice replies sent as text instead, by reason", ["reason"]
)
uploads = Counter("media_uploads_total", "Uploads to the Graph API by outcome", ["outcome"])
