import numpy as np
import pytest

from proxima.catalog.geo import envelope, lon_extent, normalize_bbox


def test_global_axes_in_both_conventions():
    assert lon_extent(np.arange(0, 360, 2.5)) == (-180.0, 180.0, True)
    assert lon_extent(np.arange(-180, 180, 10.0)) == (-180.0, 180.0, True)


def test_axis_crossing_antimeridian_gives_west_greater_than_east():
    west, east, is_global = lon_extent(np.arange(160, 205, 5.0) % 360)
    assert (west, east, is_global) == (157.5, -157.5, False)


def test_wrapping_axis_around_greenwich():
    assert lon_extent(np.array([350, 355, 0, 5, 10.0])) == (-12.5, 12.5, False)


def test_envelope_split_at_antimeridian():
    shape = envelope(170, -10, -170, 10)
    assert shape["type"] == "multipolygon"
    xs = [pt[0] for poly in shape["coordinates"] for pt in poly[0]]
    assert max(xs) == 180.0 and min(xs) == -180.0
    assert envelope(-10, -10, 10, 10)["type"] == "envelope"


def test_bbox_normalization():
    assert normalize_bbox([350, 35, 30, 70]) == [-10.0, 35.0, 30.0, 70.0]
    assert normalize_bbox([0, -90, 360, 90]) == [-180.0, -90.0, 180.0, 90.0]
    assert normalize_bbox([170, -5, 185, 5]) == [170.0, -5.0, -175.0, 5.0]


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ([0, -91, 10, 10], "outside -90..90"),
        ([0, 10, 10, 5], "above north"),
        ([-200, 0, 10, 10], "outside -180..180"),
        ([0, 0, 1], "got 3 numbers"),
        ([0, 0, float("nan"), 1], "finite"),
    ],
)
def test_bad_bbox(bbox, message):
    with pytest.raises(ValueError, match=message):
        normalize_bbox(bbox)
