import pytest
from itsdangerous import URLSafeSerializer

from notifier.mail.unsubscribe import InvalidUnsubscribeToken, UnsubscribeTokens


def test_token_round_trip() -> None:
    tokens = UnsubscribeTokens("secret")
    assert tokens.user_id(tokens.issue(7)) == 7


@pytest.mark.parametrize("user_id", [0, 1, 7, 42, 99_999, 2**31 - 1, 10**18])
def test_issued_tokens_are_the_serializers_own(user_id: int) -> None:
    """Links already mailed keep working: the fast issue makes exactly itsdangerous' token."""
    serializer = URLSafeSerializer("secret", salt="notifier.unsubscribe.v1")
    assert UnsubscribeTokens("secret").issue(user_id) == serializer.dumps({"u": user_id})


@pytest.mark.parametrize(
    "token",
    [
        UnsubscribeTokens("other-secret").issue(7),
        URLSafeSerializer("secret", salt="another.purpose").dumps({"u": 7}),  # another type
        URLSafeSerializer("secret", salt="notifier.unsubscribe.v1").dumps({"u": "7"}),
        URLSafeSerializer("secret", salt="notifier.unsubscribe.v1").dumps([7]),
        "",
        "garbage",
    ],
)
def test_foreign_and_forged_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidUnsubscribeToken):
        UnsubscribeTokens("secret").user_id(token)
