from pathlib import Path

import pytest

from proxima.config import load_stack_config
from proxima.errors import ConfigurationError
from proxima.settings import ProximaSettings

ROOT = Path(__file__).resolve().parents[1]


def _settings(tmp_path: Path, text: str | None = None, offset: int = 0) -> ProximaSettings:
    cfg = ROOT / "deployments" / "local" / "stack.yaml"
    if text is not None:
        cfg = tmp_path / "stack.yaml"
        cfg.write_text(text)
    return ProximaSettings(state_dir=tmp_path, stack_config=cfg, port_offset=offset)


def test_default_config_has_two_regions(tmp_path):
    config = load_stack_config(settings=_settings(tmp_path))
    assert config.region_names == ["us-east-1", "us-west-2"]
    assert config.prefect.api_url == "http://127.0.0.1:4200/api"


def test_port_offset_shifts_every_port(tmp_path):
    base = load_stack_config(settings=_settings(tmp_path))
    shifted = load_stack_config(settings=_settings(tmp_path, offset=1000))
    assert shifted.prefect.port == base.prefect.port + 1000
    assert shifted.opensearch.transport_port == base.opensearch.transport_port + 1000
    for a, b in zip(base.regions, shifted.regions, strict=True):
        assert (b.scheduler_port, b.dashboard_port, b.s3_port) == (
            a.scheduler_port + 1000,
            a.dashboard_port + 1000,
            a.s3_port + 1000,
        )
    assert base.fingerprint() != shifted.fingerprint()


def test_unknown_region_lists_known(tmp_path):
    config = load_stack_config(settings=_settings(tmp_path))
    with pytest.raises(ConfigurationError, match="us-east-1, us-west-2"):
        config.region("eu-west-9")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("regions: []", "at least 1"),
        ("- not a mapping", "must be a mapping"),
        (
            "regions: [{name: us-east-1, scheduler_port: 1, dashboard_port: 1, s3_port: 2}]",
            "ports used twice",
        ),
        (
            "regions:\n  - {name: us-east-1, scheduler_port: 1, dashboard_port: 2, s3_port: 3,"
            " datasets: [{name: x, kind: grib, bucket: abc, start: '2020-01', end: '2020-02',"
            " variables: [a]}]}",
            "era5",
        ),
        (
            "regions:\n  - {name: us-east-1, scheduler_port: 1, dashboard_port: 2, s3_port: 3,"
            " datasets: [{name: x, kind: era5, bucket: abc, start: '2020-05', end: '2020-02',"
            " variables: [a]}]}",
            "after end",
        ),
        ("regions: [", "not valid YAML"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigurationError, match=message):
        load_stack_config(settings=_settings(tmp_path, text))


def test_missing_config_file(tmp_path):
    settings = ProximaSettings(state_dir=tmp_path, stack_config=tmp_path / "nope.yaml")
    with pytest.raises(ConfigurationError, match="not found"):
        load_stack_config(settings=settings)
