"""Signed calls from tasks back into the app, and the app's check of them.

In the task (the worker needs no database credentials, only the secret)::

    from triggerfish import callbacks

    app = callbacks.client("https://app.example.com", scheme="header")  # x-trigger-secret
    context = app.call("context", "GET", f"/internal/trigger/directories/{id}/context")

In the app (FastAPI, Flask or Django)::

    verifier = callbacks.CallbackVerifier(os.environ["TRIGGER_CALLBACK_SECRET"], scheme="header")
    @app.get("/internal/…", dependencies=[Depends(callbacks.fastapi_dependency(verifier))])

The schemes (``bearer``, ``header``, ``hmac`` with timestamp and replay
protection) are described in ``_sign.py``.
"""

from triggerfish.callbacks._client import (
    IDEMPOTENT,
    CallbackAuth,
    CallbackClient,
    CallbackError,
    client,
)
from triggerfish.callbacks._receive import (
    django_guard,
    fastapi_dependency,
    flask_guard,
    verify_callback,
    verify_callback_async,
)
from triggerfish.callbacks._sign import (
    SECRET_ENV_NAMES,
    CallbackRejected,
    CallbackVerifier,
    Scheme,
    hmac_signature,
    signed_headers,
)

__all__ = [
    "IDEMPOTENT",
    "SECRET_ENV_NAMES",
    "CallbackAuth",
    "CallbackClient",
    "CallbackError",
    "CallbackRejected",
    "CallbackVerifier",
    "Scheme",
    "client",
    "django_guard",
    "fastapi_dependency",
    "flask_guard",
    "hmac_signature",
    "signed_headers",
    "verify_callback",
    "verify_callback_async",
]
