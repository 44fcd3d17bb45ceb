"""Password hashing (Argon2id) and the rules a new password must meet.

The rules are Django's default validators, which the original backend used: at least 8
characters, not entirely numeric, not a common password, not too similar to the username or
email. The common-password list is a short one written for this service (a few hundred of the
most frequent passwords in public breach lists), not Django's 20,000-entry list.
"""

import asyncio
import re
import secrets
from difflib import SequenceMatcher
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_SIMILARITY = 0.7


class Passwords:
    """Argon2id hashing with one dummy hash so unknown users cost as much as known ones.

    Hashing takes tens of milliseconds of CPU; it runs in a worker thread (argon2 releases the
    GIL) so the event loop keeps serving other requests meanwhile.
    """

    def __init__(self, *, memory_cost: int, time_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            memory_cost=memory_cost, time_cost=time_cost, parallelism=parallelism
        )
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of one verification, for a username that does not exist."""
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("auth").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def _too_similar(password: str, value: str) -> bool:
    password, value = password.lower(), value.lower()
    if not value:
        return False
    if len(value) >= 3 and value in password:
        return True
    parts = {value, *re.split(r"\W+", value)}
    return any(
        part
        and SequenceMatcher(a=password, b=part).quick_ratio() >= MAX_SIMILARITY
        and SequenceMatcher(a=password, b=part).ratio() >= MAX_SIMILARITY
        for part in parts
    )


def password_problems(password: str, *, username: str = "", email: str = "") -> list[str]:
    """Every rule ``password`` breaks, as messages for the client (empty when it is fine)."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(
            f"This password is too short. It must contain at least {MIN_LENGTH} characters."
        )
    if password.lower().strip() in common_passwords():
        problems.append("This password is too common.")
    if password.isdigit():
        problems.append("This password is entirely numeric.")
    if _too_similar(password, username):
        problems.append("The password is too similar to the username.")
    elif _too_similar(password, email):
        problems.append("The password is too similar to the email address.")
    return problems
