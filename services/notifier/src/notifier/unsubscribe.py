"""One-click unsubscribe tokens (RFC 8058): signed, of their own type, carrying the user id.

The salt makes them a type of their own: no other token signed with the same secret passes.
They do not expire, as an unsubscribe link in an old mail must keep working; they only ever
turn the digest off, so a leaked one cannot do more than that.
"""

from itsdangerous import BadSignature, URLSafeSerializer

_SALT = "notifier.unsubscribe.v1"


class InvalidUnsubscribeToken(Exception):
    """Forged, truncated or of another type."""


class UnsubscribeTokens:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt=_SALT)

    def issue(self, user_id: int) -> str:
        return str(self._serializer.dumps({"u": user_id}))

    def user_id(self, token: str) -> int:
        try:
            payload = self._serializer.loads(token)
        except BadSignature as exc:
            raise InvalidUnsubscribeToken("invalid unsubscribe token") from exc
        user_id = payload.get("u") if isinstance(payload, dict) else None
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise InvalidUnsubscribeToken("invalid unsubscribe token")
        return user_id
