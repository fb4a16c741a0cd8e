"""CORS of the REST answers: which web origins may read them (template: AllowedOrigins).

API Gateway answers the preflights itself (the template's Cors); the answers of the routes
are where a browser decides whether a page may read them, so they name the caller's origin
only when it is one of the configured ones, and expose the headers a client acts on.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import CORSConfig

#: request headers a page may send: the credential, JSON bodies, retries without duplicates
ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
#: answer headers a page may read: where a new job lives, when to try again, its rate limit
EXPOSE_HEADERS = ["Location", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                  "X-RateLimit-Reset"]
PREFLIGHT_MAX_AGE_S = 600


def origins(setting: str) -> list[str]:
    """"https://a.example, https://b.example" -> the list (blanks dropped, order kept)."""
    return [origin.strip() for origin in setting.split(",") if origin.strip()]


def cors_config(setting: str) -> CORSConfig | None:
    """The resolver's CORS for these origins; None (no CORS header at all) when there are none."""
    allowed = origins(setting)
    if not allowed:
        return None
    if "*" in allowed:
        raise ValueError("ALLOWED_ORIGINS lists origins; '*' would let every site read answers")
    return CORSConfig(allow_origin=allowed[0], extra_origins=allowed[1:],
                      allow_headers=ALLOW_HEADERS, expose_headers=EXPOSE_HEADERS,
                      max_age=PREFLIGHT_MAX_AGE_S)
