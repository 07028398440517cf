"""Release lines read from version strings (common/releases.py), as both private-API checks
use them."""
from common.releases import describe, release, within


def test_release_numbers_compare_as_numbers() -> None:
    assert release("2.16.2") == (2, 16, 2)
    assert release("2.17.0rc1") == (2, 17, 0)
    assert release("0.47.1") == (0, 47, 1)
    assert (2, 9) < release("2.10.0")  # not as text: '2.10' < '2.9'
    assert describe((2, 16)) == "2.16"


def test_within_a_release_line_excludes_the_next_one_and_its_pre_releases() -> None:
    assert within("2.16.0", (2, 16), (2, 17)) and within("2.16.2", (2, 16), (2, 17))
    assert not within("2.15.1", (2, 16), (2, 17))
    assert not within("2.17.0rc1", (2, 16), (2, 17))
    assert not within("2.17.0", (2, 16), (2, 17))
