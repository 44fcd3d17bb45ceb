import pytest

from auth.passwords import Passwords, common_passwords, password_problems
from auth.settings import Settings


def test_a_good_password_has_no_problems() -> None:
    assert password_problems("correct-Horse-battery-9", username="alice") == []


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("abc", "This password is too short. It must contain at least 8 characters."),
        ("83920174", "This password is entirely numeric."),
        ("Sunshine", "This password is too common."),
        ("qwertyuiop", "This password is too common."),
        ("alice.cooper", "The password is too similar to the username."),
        ("xxalice.cooper!!", "The password is too similar to the username."),
        ("Alicecooper", "The password is too similar to the username."),
    ],
)
def test_weak_passwords(password: str, problem: str) -> None:
    assert problem in password_problems(password, username="alice.cooper")


def test_similar_to_the_email() -> None:
    assert "The password is too similar to the email address." in password_problems(
        "mightymouse7", username="m", email="mightymouse@example.com"
    )


def test_the_common_list_is_lower_case_and_sizeable() -> None:
    words = common_passwords()
    assert len(words) > 500
    assert "password" in words
    assert all(word == word.lower() for word in words)


async def test_hashes_are_argon2id_with_the_owasp_defaults() -> None:
    settings = Settings()
    passwords = Passwords(
        memory_cost=settings.argon2_memory_cost,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
    )
    hashed = await passwords.hash("s3cret-enough")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await passwords.verify(hashed, "s3cret-enough")
    assert not await passwords.verify(hashed, "wrong")
    assert not await passwords.verify("not-a-hash", "wrong")
    assert not passwords.needs_rehash(hashed)


async def test_a_hash_with_other_parameters_needs_rehashing() -> None:
    old = Passwords(memory_cost=1024, time_cost=1, parallelism=1)
    new = Passwords(memory_cost=2048, time_cost=2, parallelism=1)
    hashed = await old.hash("s3cret-enough")
    assert await new.verify(hashed, "s3cret-enough")
    assert new.needs_rehash(hashed)
