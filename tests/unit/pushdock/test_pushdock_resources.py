"""Resource limits: parsing sizes and CPUs (one-line errors, exact round trips), lookups, engine arguments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushdock import resources
from pushdock.errors import UsageError
from pushdock.resources import Limits
from pushdock.state import State


@pytest.mark.parametrize(("text", "value"), [
    ("256m", 256 << 20), ("256M", 256 << 20), ("256MB", 256 << 20), ("256MiB", 256 << 20), ("1g", 1 << 30),
    ("1.5g", 3 << 29), ("6m", 6 << 20), ("7340032", 7 << 20), ("8192k", 8 << 20), ("1t", 1 << 40),
])
def test_memory_sizes(text: str, value: int) -> None:
    assert resources.parse_memory(text) == value


@pytest.mark.parametrize(("text", "reason"), [
    ("", "memory must be a size"), ("lots", "memory must be a size"), ("-1m", "memory must be a size"),
    ("1k", "at least 6m"), ("5m", "at least 6m"), ("2t", "at most 1t"), ("1e9", "memory must be a size"),
    ("256m\n--privileged", "memory must be a size"),
])
def test_bad_memory_sizes(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        resources.parse_memory(text)


@pytest.mark.parametrize(("text", "reason"), [
    ("0", "between 0.01"), ("0.001", "must be a number"), ("nan", "must be a number"), ("inf", "must be a number"),
    ("2000", "between 0.01"), ("-1", "must be a number"), ("1,5", "must be a number"),
])
def test_bad_cpus(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        resources.parse_cpu(text)


@given(st.text(max_size=40))
def test_memory_parser_never_crashes(text: str) -> None:
    try:
        value = resources.parse_memory(text)
    except UsageError as e:
        assert "\n" not in str(e)
        return
    assert resources.MIN_MEMORY <= value <= resources.MAX_MEMORY


@given(st.integers(resources.MIN_MEMORY, resources.MAX_MEMORY))
def test_memory_round_trips(value: int) -> None:
    assert resources.parse_memory(resources.format_memory(value)) == value


def test_cpu_around_whitespace() -> None:
    assert resources.parse_cpu(" 0.5\x1f") == 0.5  # str.strip() whitespace, which float() would refuse


@given(st.integers(1, 102400))
def test_cpu_round_trips(hundredths: int) -> None:
    cpu = hundredths / 100
    assert resources.parse_cpu(f"{cpu:g}") == cpu


def test_a_process_falls_back_to_the_default_field_by_field(tmp_path) -> None:
    state = State(tmp_path)
    state.create_app("app")
    resources.store(state, "app", {"_default_": Limits(memory=256 << 20, cpu=0.5), "web": Limits(memory=1 << 30)})
    assert resources.for_process(state, "app", "web") == Limits(memory=1 << 30, cpu=0.5)
    assert resources.for_process(state, "app", "worker") == Limits(memory=256 << 20, cpu=0.5)
    resources.store(state, "app", {})
    assert resources.for_process(state, "app", "web") == Limits()
    assert state.get(resources.PLUGIN, "app", resources.PROPERTY) is None


def test_engine_arguments() -> None:
    limits = Limits(memory=64 << 20, cpu=1.5)
    assert resources.host_config(limits) == {"mem_limit": 64 << 20, "memswap_limit": 64 << 20,
                                             "nano_cpus": 1_500_000_000}
    assert resources.host_config(Limits()) == {}
    assert resources.build_container_limits(limits) == {"memory": 64 << 20, "memswap": 64 << 20}
    spec = resources.swarm_resources(limits)
    assert spec["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 64 << 20}
    assert resources.swarm_resources(Limits()) is None


def test_build_cap_default_setting_and_app_value(ctx) -> None:
    ctx.state.create_app("app")
    assert resources.for_build(ctx, "app") == Limits(memory=max(resources.MIN_MEMORY, resources.host_memory() // 2))
    ctx.settings.build_memory = "3g"
    assert resources.for_build(ctx, "app") == Limits(memory=3 << 30)
    resources.store(ctx.state, "app", {"_build_": Limits(memory=512 << 20)})
    assert resources.for_build(ctx, "app") == Limits(memory=512 << 20)
    resources.store(ctx.state, "app", {})
    ctx.settings.build_memory = "plenty"
    with pytest.raises(UsageError, match="PUSHDOCK_BUILD_MEMORY: memory must be a size"):
        resources.for_build(ctx, "app")
