import pytest

from .ranges import seed_adult_ranges


@pytest.fixture(autouse=True)
def adult_ranges(db):
    seed_adult_ranges()
