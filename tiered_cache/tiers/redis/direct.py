"""One command on a pooled connection, without redis-py's command wrapper.

``redis.Redis.execute_command`` wraps every command in a retry helper, two
closures and its observability recorders (connection counts, durations, error
counts), and then looks up a response callback: about 37 000 instructions per
``GET`` on redis-py 7, a quarter of a whole L2 hit. The tier uses none of it:
its pools are configured with no retry (``connections.redis_options``), it
reads replies raw, and it counts and times its calls itself (``Slot``). So the
hot commands (``GET``, ``SET``, the write and counting scripts) go straight to
a connection of the client's own pool, the same pool, the same parser
(hiredis when installed) and the same error classes: an error reply raises its
``ResponseError``, a transport error disconnects the connection, as
redis-py's own failure path does, before it is raised. Clients without a
pool of that kind (a Cluster client, a single-connection client) take the
ordinary path.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions as rex

__all__ = ["call", "script"]


def call(client: Any, *args: Any) -> Any:
    """Run ``args`` on a connection of ``client``'s pool; return the raw reply."""
    pool = getattr(client, "connection_pool", None)
    if pool is None or client.connection is not None:
        return client.execute_command(*args)
    connection = pool.get_connection()
    try:
        connection.send_command(*args)
        return connection.read_response()
    except rex.ResponseError:
        raise  # the reply was read whole: the connection is fine
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def script(client: Any, sha: str, source: str, keys: list[Any], argv: list[Any]) -> Any:
    """Run a Lua script by its SHA1, loading it (``EVAL``) when Redis lacks it."""
    try:
        return call(client, "EVALSHA", sha, len(keys), *keys, *argv)
    except rex.NoScriptError:
        return call(client, "EVAL", source, len(keys), *keys, *argv)
