from notifier.mail.rate_limit import RateLimiter


async def test_rate_limiter_spaces_acquisitions() -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    limiter = RateLimiter(per_second=4, clock=lambda: 100.0, sleep=sleep)
    for _ in range(4):
        await limiter.acquire()
    assert slept == [0.25, 0.5, 0.75]  # the first at once, then one slot each


async def test_no_limit_never_waits() -> None:
    async def sleep(delay: float) -> None:
        raise AssertionError("must not wait")

    limiter = RateLimiter(per_second=0, clock=lambda: 100.0, sleep=sleep)
    for _ in range(100):
        await limiter.acquire()
