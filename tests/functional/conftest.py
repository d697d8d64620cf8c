"""Fixtures shared by the functional tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def lab():
    """A network lab of its own for the test module (client, router, server namespaces; pid-based names, so runs of
    several checkouts at once do not collide), skipped where namespaces cannot be made."""
    from tests.lab import NetLab
    from tests.lab import available as lab_available

    if lab_available() is not None:
        pytest.skip(f"network lab: {lab_available()}")
    net = NetLab().up()
    yield net
    net.down()
