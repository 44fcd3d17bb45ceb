"""``auth replay-users``: republish every user as ``user.updated``."""

import argparse
import asyncio

from auth.replay import replay_users
from auth.settings import Settings
from servicekit import create_engine, create_session_maker


async def _replay(settings: Settings) -> int:
    engine = create_engine(settings.database_url, pool_size=2)
    try:
        return await replay_users(create_session_maker(engine))
    finally:
        await engine.dispose()


def replay_users_command(settings: Settings, args: argparse.Namespace) -> int:
    count = asyncio.run(_replay(settings))
    print(f"queued {count} user.updated events")
    return 0
