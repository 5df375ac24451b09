"""The URL configuration of the Django callback test: one view, set by the test."""

from __future__ import annotations

from typing import Any

from django.urls import path

#: the guarded view under test
VIEW: Any = None


def _dispatch(request: Any) -> Any:
    return VIEW(request)


urlpatterns = [path("hook/", _dispatch)]
