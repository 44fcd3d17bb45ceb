import pytest

from recipes.listing import InvalidPage, page_request
from recipes.responses import _matches


@pytest.mark.parametrize(
    ("page", "size", "expected"),
    [
        (None, None, (1, 10, 0)),
        ("3", "5", (3, 5, 10)),
        ("2", "1000", (2, 100, 100)),
        ("1", "zero", (1, 10, 0)),
        ("1", "-4", (1, 10, 0)),
    ],
)
def test_page_request(page: str | None, size: str | None, expected: tuple[int, int, int]) -> None:
    request = page_request(page, size, default_size=10, max_size=100)
    assert (request.number, request.size, request.offset) == expected


@pytest.mark.parametrize("page", ["0", "-1", "x", "1.5"])
def test_invalid_page(page: str) -> None:
    with pytest.raises(InvalidPage):
        page_request(page, None, default_size=10, max_size=100)


def test_page_bounds() -> None:
    request = page_request("3", "10", default_size=10, max_size=100)
    request.check(21)
    assert not request.has_next(21)
    with pytest.raises(InvalidPage):
        request.check(20)
    page_request("1", None, default_size=10, max_size=100).check(0)


def test_if_none_match() -> None:
    assert _matches('W/"abc"', 'W/"abc"')
    assert _matches('"x", "abc"', 'W/"abc"')
    assert _matches("*", 'W/"abc"')
    assert not _matches('"abcd"', 'W/"abc"')
    assert not _matches("", 'W/"abc"')
