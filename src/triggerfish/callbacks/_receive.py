"""The receiving app's side: check a task's callback in FastAPI, Flask or Django.

Nothing here imports a web framework at module level: each helper reads the
request it is given (or imports its framework when called), so an app needs
only the framework it runs.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from triggerfish.callbacks._sign import CallbackRejected, CallbackVerifier

F = TypeVar("F", bound=Callable[..., Any])


def verify_callback(request: Any, verifier: CallbackVerifier) -> None:
    """Check a Flask or Django request; raise :class:`CallbackRejected` (401) when refused.

    Example (Flask)::

        @app.post("/trigger/callback")
        def callback():
            verify_callback(request, verifier)   # or use flask_guard(verifier)
            ...
    """
    if hasattr(request, "get_data"):  # Flask / Werkzeug
        query = request.query_string.decode()
        target = request.path + (f"?{query}" if query else "")
        body = request.get_data(cache=True)
    elif hasattr(request, "get_full_path"):  # Django
        target, body = request.get_full_path(), request.body
    else:
        raise TypeError(
            "verify_callback takes a Flask or Django request; "
            "for FastAPI/Starlette use verify_callback_async or fastapi_dependency"
        )
    verifier.check(request.method, target, dict(request.headers.items()), body)


async def verify_callback_async(request: Any, verifier: CallbackVerifier) -> None:
    """Check a Starlette/FastAPI request; raise :class:`CallbackRejected` when refused."""
    query = request.url.query
    target = request.url.path + (f"?{query}" if query else "")
    body = await request.body()
    verifier.check(request.method, target, dict(request.headers.items()), body)


def fastapi_dependency(verifier: CallbackVerifier) -> Callable[[Any], Awaitable[None]]:
    """A FastAPI dependency that answers 401 to a refused callback.

    Example::

        @app.post("/trigger/callback", dependencies=[Depends(fastapi_dependency(verifier))])
        async def callback(body: CallbackBody) -> dict: ...
    """
    from fastapi import HTTPException, Request

    async def dependency(request: Request) -> None:
        try:
            await verify_callback_async(request, verifier)
        except CallbackRejected as exc:
            raise HTTPException(status_code=401, detail=str(exc)) from None

    # FastAPI reads the annotation at run time; this module's are strings
    dependency.__annotations__["request"] = Request
    return dependency


def flask_guard(verifier: CallbackVerifier) -> Callable[[F], F]:
    """A Flask view decorator: a refused callback gets 401 ``{"error": …}``."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            from flask import jsonify, request

            try:
                verify_callback(request, verifier)
            except CallbackRejected as exc:
                return jsonify(error=str(exc)), 401
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return wrap


def django_guard(verifier: CallbackVerifier) -> Callable[[F], F]:
    """A Django view decorator: a refused callback gets 401 ``{"error": …}``."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def guarded(request: Any, *args: Any, **kwargs: Any) -> Any:
            from django.http import JsonResponse

            try:
                verify_callback(request, verifier)
            except CallbackRejected as exc:
                return JsonResponse({"error": str(exc)}, status=401)
            return view(request, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return wrap
