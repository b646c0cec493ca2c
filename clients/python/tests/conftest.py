import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gateway import Gateway  # noqa: E402


@pytest.fixture(params=["embedded", "direct"])
def gateway(request, tmp_path: Path) -> Iterator[Gateway]:
    """The real gateway binary: embedded Kafka (librdkafka mock cluster) or `kafka.mode=direct`;
    3 partitions either way."""
    env = {"FANLINE_KAFKA_PARTITIONS": "3"}
    if request.param == "direct":
        env["FANLINE_KAFKA_MODE"] = '"direct"'
    g = Gateway(tmp_path, env)
    yield g
    g.stop()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator:
    started = []

    def make(env=None) -> Gateway:
        g = Gateway(tmp_path, env)
        started.append(g)
        return g

    yield make
    for g in started:
        g.stop()
