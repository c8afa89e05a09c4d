"""MySQL and MariaDB: a walk down the due index one query per step, and their session bounds."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.db import connections

from .base import Engine

if TYPE_CHECKING:
    from django.db.backends.mysql.base import DatabaseWrapper


class MySQL(Engine):
    vendor = "mysql"

    def session_bounds(self, seconds: float) -> list[str]:
        """MariaDB bounds idle transactions too; MySQL has no such bound, only the lock wait."""
        statements = [f"SET SESSION innodb_lock_wait_timeout = {max(int(seconds), 1)}"]
        if cast("DatabaseWrapper", connections[self.using]).mysql_is_mariadb:
            statements.append(f"SET SESSION idle_transaction_timeout = {max(int(seconds), 1)}")
        return statements

    def pending_priorities(self) -> list[int]:
        """One query per step: in a recursive query the bound ``priority < p.v`` is not a constant when
        the plan is made, so MySQL/MariaDB would read every pending job of the priority above."""
        priorities: list[int] = []
        with connections[self.using].cursor() as cursor:
            while True:
                cursor.execute(
                    "SELECT priority FROM scheduled_actions_job WHERE state = 'pending' AND priority < %s "
                    "ORDER BY priority DESC LIMIT 1",
                    [priorities[-1] if priorities else 2**31],
                )
                row = cursor.fetchone()
                if row is None:
                    return priorities
                priorities.append(row[0])
