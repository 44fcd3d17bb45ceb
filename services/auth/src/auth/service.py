"""Account use cases: each state change and its user event are written in one transaction.

The caller owns that transaction (the rule in ``auth.api``): nothing here commits or rolls
back, and an error raised here rolls the whole change back in the route.
"""

import re
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from auth.models import EMAIL_UNIQUE_INDEX, RefreshToken, User
from auth.passwords import Passwords, password_problems
from auth.settings import SERVICE_NAME
from contracts import UserDeleted, UserRegistered, UserRole, UserUpdated
from servicekit import NotAuthenticated, add_event

USERNAME_MAX_LENGTH = 150
USERNAME_PATTERN = re.compile(r"^[\w.@+-]+\Z")
REQUIRED = "This field may not be blank."
EMAIL_TAKEN = "A user with that email already exists."


class FieldErrors(Exception):
    """Input the client must fix: ``{"field": ["message", ...]}`` (the original backend's shape)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _snapshot_fields(user: User) -> dict[str, object]:
    assert user.id is not None
    return {
        "user_id": user.id,
        "username": user.username,
        "email": user.email,
        "role": UserRole(user.role),
        "is_active": user.is_active,
        "date_joined": user.date_joined,
        "updated_at": user.updated_at,
        "version": user.version,
    }


def user_updated(user: User) -> UserUpdated:
    return UserUpdated.model_validate(_snapshot_fields(user))


def _username_problems(username: str) -> list[str]:
    if not username:
        return [REQUIRED]
    problems = []
    if len(username) > USERNAME_MAX_LENGTH:
        problems.append(f"Ensure this field has no more than {USERNAME_MAX_LENGTH} characters.")
    if not USERNAME_PATTERN.match(username):
        problems.append(
            "Enter a valid username. This value may contain only letters, numbers, "
            "and @/./+/-/_ characters."
        )
    return problems


def normalize_email(email: str) -> str:
    """The address as it will be mailed; raises FieldErrors when it is not one.

    Every accepted address must be one the notifier can send to (issue 16 row 9): an
    internationalised domain is stored in its ASCII (IDNA, punycode) form, and a local part
    with characters outside ASCII, which needs SMTPUTF8 (not supported), is refused here.
    """
    if not email.strip():
        raise FieldErrors({"email": [REQUIRED]})
    try:
        valid = validate_email(email.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise FieldErrors({"email": ["Enter a valid email address."]}) from exc
    assert valid.ascii_email is not None  # allow_smtputf8=False: the whole address is ASCII
    return valid.ascii_email


async def _email_taken(session: AsyncSession, email: str, *, except_id: int | None = None) -> bool:
    query = select(col(User.id)).where(func.lower(col(User.email)) == email.lower())
    if except_id is not None:
        query = query.where(col(User.id) != except_id)
    return (await session.scalar(query)) is not None


def _violated_constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return str(name) if name is not None else None


def _merge(errors: dict[str, list[str]], field: str, problems: list[str]) -> None:
    if problems:
        errors.setdefault(field, []).extend(problems)


async def register(
    *,
    session: AsyncSession,
    passwords: Passwords,
    username: str,
    email: str | None,
    password: str,
    role: str,
) -> User:
    """Create an account and its ``user.registered`` event; FieldErrors lists every problem."""
    errors: dict[str, list[str]] = {}
    _merge(errors, "username", _username_problems(username))
    if not email:
        email = None  # optional, as in the original; "" is how a form leaves it out
    else:
        try:
            email = normalize_email(email)
        except FieldErrors as exc:
            errors.update(exc.errors)
    if role not in {r.value for r in UserRole}:
        errors["role"] = [f'"{role}" is not a valid choice.']
    _merge(errors, "password", password_problems(password, username=username, email=email or ""))
    if "username" not in errors:
        taken = await session.scalar(
            select(col(User.id)).where(func.lower(col(User.username)) == username.lower())
        )
        if taken is not None:
            errors["username"] = ["A user with that username already exists."]
    if email is not None and "email" not in errors and await _email_taken(session, email):
        errors["email"] = [EMAIL_TAKEN]
    if errors:
        raise FieldErrors(errors)

    now = datetime.now(UTC)
    user = User(
        username=username,
        email=email,
        password_hash=await passwords.hash(password),
        role=role,
        date_joined=now,
        updated_at=now,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent sign-up took the name or address
        if _violated_constraint(exc) == EMAIL_UNIQUE_INDEX:
            raise FieldErrors({"email": [EMAIL_TAKEN]}) from exc
        raise FieldErrors({"username": ["A user with that username already exists."]}) from exc
    await add_event(
        session, UserRegistered.model_validate(_snapshot_fields(user)), producer=SERVICE_NAME
    )
    return user


async def get_active_user(*, session: AsyncSession, user_id: int, for_update: bool = False) -> User:
    """The caller's account; 401 when the token outlived it.

    ``for_update`` locks the row until the transaction ends: every change to a user reads the
    version the previous change wrote, so each gets its own version and the copies built from
    the events converge on the last one (issue 16 row 4; a lost update otherwise).
    """
    user = await session.get(User, user_id, with_for_update=for_update, populate_existing=True)
    if user is None or not user.is_active:
        raise NotAuthenticated("User not found", code="user_not_found")
    return user


async def revoke_all_refresh_tokens(*, session: AsyncSession, user_id: int, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )


async def update_me(
    *,
    session: AsyncSession,
    passwords: Passwords,
    user_id: int,
    email: str | None,
    password: str | None,
    current_password: str | None,
) -> User:
    """Change email and/or password; a password change signs out every other session."""
    user = await get_active_user(session=session, user_id=user_id, for_update=True)
    errors: dict[str, list[str]] = {}
    new_email = user.email
    if email is not None:
        try:
            new_email = normalize_email(email)
        except FieldErrors as exc:
            errors.update(exc.errors)
        else:
            if await _email_taken(session, new_email, except_id=user_id):
                errors["email"] = [EMAIL_TAKEN]
    if password is not None:
        if not current_password or not await passwords.verify(user.password_hash, current_password):
            errors["current_password"] = ["Your current password was entered incorrectly."]
        _merge(
            errors,
            "password",
            password_problems(password, username=user.username, email=new_email or ""),
        )
    if errors:
        raise FieldErrors(errors)

    now = datetime.now(UTC)
    changed = False
    if new_email != user.email:
        user.email, changed = new_email, True
    if password is not None:
        user.password_hash = await passwords.hash(password)
        await revoke_all_refresh_tokens(session=session, user_id=user_id, now=now)
        changed = True
    if changed:
        user.version += 1
        user.updated_at = now
        try:
            await session.flush()
        except IntegrityError as exc:  # another account took the address since we looked
            raise FieldErrors({"email": [EMAIL_TAKEN]}) from exc
        await add_event(session, user_updated(user), producer=SERVICE_NAME)
    return user


async def delete_me(*, session: AsyncSession, user_id: int) -> None:
    """Delete the account (its refresh tokens go with it) and announce ``user.deleted``."""
    user = await get_active_user(session=session, user_id=user_id, for_update=True)
    assert user.id is not None
    event = UserDeleted(
        user_id=user.id,
        username=user.username,
        version=user.version + 1,
        deleted_at=datetime.now(UTC),
    )
    await session.delete(user)
    await add_event(session, event, producer=SERVICE_NAME)
