"""A bounded mixed load through the gateway, a fault in the middle of it, and the accounting after.

The load (registrations, recipes with small JPEGs, ratings, reads) is paced by a thread pool at
a fixed rate for a fixed time. Only requests the platform accepted (2xx) count: each must have
its effect exactly once once the queues are drained. A request that failed during the fault may
or may not have had an effect; it is neither lost nor duplicated, only reported.
"""

import io
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from PIL import Image

from reliability.probes import (
    PASSWORD,
    Account,
    ConnectionLog,
    Platform,
    ReadinessLog,
    register,
    sampling_connections,
    sampling_readiness,
    unique,
)

_JPEGS: dict[tuple[int, int], bytes] = {}


def small_jpeg(width: int = 320, height: int = 240) -> bytes:
    if (width, height) not in _JPEGS:
        image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        _JPEGS[(width, height)] = buffer.getvalue()
    return _JPEGS[(width, height)]


@dataclass
class LoadLog:
    """What the load sent and what the platform accepted."""

    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    users: dict[int, str] = field(default_factory=dict)  # accepted registrations: id → username
    recipes: set[int] = field(default_factory=set)
    #: Accepted ratings: (recipe id, customer id) → score. Each pair is rated once.
    ratings: dict[tuple[int, int], int] = field(default_factory=dict)
    reads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def accepted(self) -> int:
        return len(self.users) + len(self.recipes) + len(self.ratings) + self.reads


class MixedLoad:
    """Registrations, recipe creations with images, ratings and reads, at a fixed pace."""

    def __init__(self, platform: Platform, *, seed: int, rate: float = 12.0) -> None:
        self._platform = platform
        self._random = random.Random(seed)
        self._per_second = rate
        self.log = LoadLog()
        self._client = httpx.Client(
            base_url=platform.gateway_url,
            timeout=20,
            limits=httpx.Limits(max_connections=16),
        )
        self.sellers: list[Account] = []
        self.customers: list[Account] = []
        self._pairs_taken: set[tuple[int, int]] = set()

    def prepare(self, sellers: int = 3, customers: int = 6) -> None:
        """Accounts signed in before the load (sign-in is rate limited at the gateway)."""
        self.sellers = [register(self._client, "seller", prefix="load_s") for _ in range(sellers)]
        self.customers = [
            register(self._client, "customer", prefix="load_c") for _ in range(customers)
        ]

    def close(self) -> None:
        self._client.close()

    def run(
        self,
        seconds: float,
        *,
        during: Callable[[], None],
        fault_at: float,
        fault_timeout: float = 120.0,
    ) -> None:
        """Send the load for ``seconds``; call ``during`` (the fault) after ``fault_at`` seconds."""
        interval = 1.0 / self._per_second
        started = time.monotonic()

        def inject() -> None:
            time.sleep(fault_at)
            during()

        fault = threading.Thread(target=inject, name="fault", daemon=True)
        fault.start()
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="load") as pool:
            tick = 0
            while (now := time.monotonic()) - started < seconds:
                pool.submit(self._one_request, self._random.random(), self._random.random())
                tick += 1
                time.sleep(max(0.0, started + tick * interval - now))
        fault.join(timeout=fault_timeout)
        assert not fault.is_alive(), "the fault did not finish"

    def _one_request(self, kind: float, pick: float) -> None:
        try:
            if kind < 0.1:
                self._register(pick)
            elif kind < 0.3:
                self._create_recipe(pick)
            elif kind < 0.6:
                self._rate(pick)
            else:
                self._read(pick)
        except httpx.HTTPError as exc:
            with self.log.lock:
                self.log.statuses[type(exc).__name__] += 1

    def _record(self, what: str, response: httpx.Response) -> bool:
        with self.log.lock:
            self.log.statuses[f"{what} {response.status_code}"] += 1
        return response.is_success

    def _register(self, pick: float) -> None:
        name = unique("load_r")
        role = "seller" if pick < 0.3 else "customer"
        with self.log.lock:
            self.log.sent["register"] += 1
        response = self._client.post(
            "/api/auth/register/",
            json={
                "username": name,
                "password": PASSWORD,
                "email": f"{name}@example.com",
                "role": role,
            },
        )
        if self._record("register", response):
            with self.log.lock:
                self.log.users[response.json()["id"]] = name

    def _create_recipe(self, pick: float) -> None:
        seller = self.sellers[int(pick * len(self.sellers))]
        with self.log.lock:
            self.log.sent["create recipe"] += 1
        response = self._client.post(
            "/api/recipes/",
            headers=seller.headers,
            data={"title": unique("Load recipe"), "description": "d", "ingredients": "flour"},
            files={"image": ("photo.jpg", small_jpeg(), "image/jpeg")},
        )
        if self._record("create recipe", response):
            with self.log.lock:
                self.log.recipes.add(response.json()["id"])

    def _rate(self, pick: float) -> None:
        with self.log.lock:
            recipes = sorted(self.log.recipes)
            free = [
                (r, c)
                for r in recipes[-10:]
                for c in self.customers
                if (r, c.user_id) not in self._pairs_taken
            ]
            if not free:
                self.log.sent["read"] += 1
                pair = None
            else:
                recipe_id, customer = free[int(pick * len(free))]
                self._pairs_taken.add((recipe_id, customer.user_id))
                self.log.sent["rate"] += 1
                pair = (recipe_id, customer)
        if pair is None:
            self._read(pick)
            return
        recipe_id, customer = pair
        score = 1 + int(pick * 1000) % 5
        response = self._client.post(
            f"/api/recipes/{recipe_id}/rate/",
            headers=customer.headers,
            json={"score": score, "comment": "load"},
        )
        if self._record("rate", response):
            with self.log.lock:
                self.log.ratings[(recipe_id, customer.user_id)] = score

    def _read(self, pick: float) -> None:
        with self.log.lock:
            self.log.sent["read"] += 1
            recipes = sorted(self.log.recipes)
        if recipes and pick < 0.5:
            response = self._client.get(f"/api/recipes/{recipes[int(pick * len(recipes))]}/")
        else:
            response = self._client.get("/api/recipes/", params={"ordering": "-created_at"})
        if self._record("read", response):
            with self.log.lock:
                self.log.reads += 1


@dataclass
class Accounting:
    """Effects of the accepted requests, checked in every service's own database."""

    verified: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    #: Effects without an accepted request (the request failed after its commit, e.g. a 502).
    unacknowledged: list[str] = field(default_factory=list)

    def lost_or_duplicated(self) -> str:
        return "\n".join(self.lost + self.duplicated)


def account(platform: Platform, log: LoadLog) -> Accounting:
    """Every accepted request's effect, exactly once (call after the queues drained)."""
    result = Accounting()
    ids = list(log.users)
    notifier = dict(
        platform.query(
            "notifier",
            "SELECT user_id, username FROM recipients WHERE user_id = ANY(%s) AND NOT deleted",
            ids,
        )
    )
    backup = dict(
        platform.query(
            "backup",
            "SELECT user_id, username FROM users WHERE user_id = ANY(%s) AND deleted_at IS NULL",
            ids,
        )
    )
    welcomes = Counter(
        user_id
        for (user_id,) in platform.query(
            "notifier",
            "SELECT user_id FROM deliveries WHERE kind = 'welcome' AND user_id = ANY(%s)",
            ids,
        )
    )
    for user_id, username in log.users.items():
        for copy, rows in (("notifier", notifier), ("backup", backup)):
            if rows.get(user_id) == username:
                result.verified += 1
            else:
                result.lost.append(f"user {user_id} ({username}) missing from the {copy} copy")
        if welcomes[user_id] == 1:
            result.verified += 1
        elif welcomes[user_id] == 0:
            result.lost.append(f"no welcome mail planned for user {user_id}")
        else:
            result.duplicated.append(f"{welcomes[user_id]} welcome mails for user {user_id}")

    recipe_ids = sorted(log.recipes)
    statuses = dict(
        platform.query(
            "recipes",
            "SELECT id, image_status FROM recipes WHERE id = ANY(%s)",
            recipe_ids,
        )
    )
    jobs = Counter(
        recipe_id
        for (recipe_id,) in platform.query(
            "media",
            "SELECT recipe_id FROM image_jobs WHERE recipe_id = ANY(%s) AND status = 'ready'",
            recipe_ids,
        )
    )
    copies = {
        recipe_id
        for (recipe_id,) in platform.query(
            "notifier", "SELECT recipe_id FROM recipes WHERE recipe_id = ANY(%s)", recipe_ids
        )
    }
    for recipe_id in recipe_ids:
        status = statuses.get(recipe_id)
        if status in ("ready", "failed"):
            result.verified += 1
        else:
            result.lost.append(f"recipe {recipe_id} image_status {status!r} (not processed)")
        if status == "ready" and jobs[recipe_id] != 1:
            target = result.duplicated if jobs[recipe_id] > 1 else result.lost
            target.append(f"recipe {recipe_id}: {jobs[recipe_id]} ready image jobs")
        if recipe_id in copies:
            result.verified += 1
        else:
            result.lost.append(f"recipe {recipe_id} missing from the notifier's copy")

    stored = {
        (recipe_id, user_id): score
        for recipe_id, user_id, score in platform.query(
            "recipes",
            "SELECT recipe_id, user_id, score FROM ratings WHERE recipe_id = ANY(%s)",
            recipe_ids,
        )
    }
    for pair, score in log.ratings.items():
        if stored.get(pair) == score:
            result.verified += 1
        else:
            result.lost.append(f"rating {pair} = {score} stored as {stored.get(pair)}")
    result.unacknowledged += [
        f"rating {p} stored without a 2xx" for p in set(stored) - set(log.ratings)
    ]
    # Aggregates equal the ratings table for every recipe (a rating counted twice shows here).
    for recipe_id, count, total, avg, real_count, real_sum in platform.query(
        "recipes",
        "SELECT r.id, r.rating_count, r.rating_sum, r.avg_rating,"
        " count(x.id), coalesce(sum(x.score), 0)"
        " FROM recipes r LEFT JOIN ratings x ON x.recipe_id = r.id"
        " GROUP BY r.id HAVING r.rating_count <> count(x.id)"
        " OR r.rating_sum <> coalesce(sum(x.score), 0)",
    ):
        result.duplicated.append(
            f"recipe {recipe_id}: aggregates count={count} sum={total} avg={avg}, "
            f"ratings table count={real_count} sum={real_sum}"
        )
    notifier_ratings = dict(
        ((recipe_id, user_id), score)
        for recipe_id, user_id, score in platform.query(
            "notifier",
            "SELECT recipe_id, user_id, score FROM ratings WHERE recipe_id = ANY(%s)",
            recipe_ids,
        )
    )
    for pair, score in log.ratings.items():
        if notifier_ratings.get(pair) == score:
            result.verified += 1
        else:
            result.lost.append(f"rating {pair} missing from the notifier's copy")
    return result


def settle(platform: Platform, log: LoadLog, *, within: float = 150.0) -> Accounting:
    """Wait until the platform is ready, drained and every effect is there (or time runs out)."""
    deadline = time.monotonic() + within
    result = Accounting()
    while time.monotonic() < deadline:
        try:
            if platform.all_ready() and platform.drained():
                result = account(platform, log)
                if not result.lost and not result.duplicated:
                    return result
        except (psycopg.OperationalError, httpx.HTTPError):
            pass  # still recovering
        time.sleep(1.0)
    return account(platform, log)


@dataclass
class ScenarioOutcome:
    load: LoadLog
    readiness: ReadinessLog
    accounting: Accounting
    fault_notes: list[str]
    connections: ConnectionLog
    extra: dict[str, Any] = field(default_factory=dict)


def run_scenario(
    platform: Platform,
    fault: Callable[[], list[str]],
    *,
    seed: int,
    seconds: float = 24.0,
    fault_at: float = 8.0,
    fault_timeout: float = 120.0,
    settle_within: float = 150.0,
) -> ScenarioOutcome:
    """The load with ``fault`` in the middle, then the accounting."""
    load = MixedLoad(platform, seed=seed)
    notes: list[str] = []
    try:
        load.prepare()
        with sampling_readiness(platform) as readiness, sampling_connections(platform) as held:
            load.run(
                seconds,
                during=lambda: notes.extend(fault()),
                fault_at=fault_at,
                fault_timeout=fault_timeout,
            )
    finally:
        load.close()
    accounting = settle(platform, load.log, within=settle_within)
    return ScenarioOutcome(load.log, readiness, accounting, notes, held)
