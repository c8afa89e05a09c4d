"""``ctx.auth``: who called a function.

A function called over HTTP gets the request's user; everything it calls through ``ctx.run_query``,
``ctx.run_mutation`` and ``ctx.run_action`` gets the same. Scheduled functions and crons run with no
user (``ctx.auth.is_authenticated`` is False): pass the user's id as an argument, as in Convex.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import Unauthenticated


class Auth:
    """The caller of a function: ``ctx.auth.user``, ``ctx.auth.is_authenticated``, ``ctx.auth.require_user()``."""

    __slots__ = ("_user",)

    def __init__(self, user: Any = None):
        self._user = user

    @property
    def user(self) -> Any:
        """The caller's user, or an ``AnonymousUser`` when there is none."""
        if self._user is None:
            from django.contrib.auth.models import AnonymousUser

            return AnonymousUser()
        return self._user

    @property
    def is_authenticated(self) -> bool:
        return self._user is not None and bool(self._user.is_authenticated)

    def require_user(self) -> Any:
        """Return the signed-in user; raise ``Unauthenticated`` (HTTP 401) when there is none."""
        if not self.is_authenticated:
            raise Unauthenticated("sign in to call this function")
        return self._user

    def __repr__(self) -> str:
        return f"<Auth {self._user!r}>" if self.is_authenticated else "<Auth anonymous>"


ANONYMOUS = Auth()
