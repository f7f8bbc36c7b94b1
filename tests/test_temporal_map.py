"""2D-TAN temporal map: masks (exact counts), cell times, resampling, pooled cell features."""

import numpy as np
import pytest

from backends.analysis import temporal_map as tm


def official_style_sparse_mask(n: int) -> np.ndarray:
    """Independent construction in the style of 2D-TAN's layer loop (not the closed form): 15 pooling layers
    of stride 1, then 8 layers per doubled stride; each layer adds offset += stride, starts on the stride."""
    mask = np.eye(n, dtype=bool)
    offset, stride, layers = 0, 1, 15
    while offset < n:
        for _ in range(layers):
            offset += stride
            for a in range(0, n - offset, stride):
                mask[a, a + offset] = True
        stride, layers = stride * 2, 8
    return mask


@pytest.mark.parametrize("n,count", [(16, 136), (64, 1104), (128, 2548)])
def test_sparse_mask_counts_match_2dtan(n, count):
    assert int(tm.sparse_moment_mask(n).sum()) == count


@pytest.mark.parametrize("n", [16, 32, 64, 128])
def test_sparse_mask_matches_loop_construction(n):
    assert np.array_equal(tm.sparse_moment_mask(n), official_style_sparse_mask(n))


def test_dense_mask_is_upper_triangle():
    for n in (16, 64):
        m = tm.dense_moment_mask(n)
        assert m.sum() == n * (n + 1) // 2
        assert not np.tril(m, -1).any()
    assert tm.moment_mask(64, "auto").sum() == 2080 and tm.moment_mask(128, "auto").sum() == 2548
    with pytest.raises(ValueError):
        tm.moment_mask(16, "diagonal")


def test_cell_times_run_from_start_of_a_to_end_of_b():
    ct = tm.clip_grid(32.0, 16)
    assert np.allclose(ct[:, 1] - ct[:, 0], 2.0)
    cells = tm.cell_times(ct)
    assert tuple(cells[3, 7]) == (6.0, 16.0)  # clip 3 starts at 6 s, clip 7 ends at 16 s
    assert tuple(cells[0, 15]) == (0.0, 32.0)
    tmap = tm.TemporalMap(16, ct, np.zeros((16, 16)), tm.dense_moment_mask(16))
    assert tmap.cell_window(3, 7) == (6.0, 16.0)


def test_resample_averages_frames_per_clip_and_fills_empty_clips():
    times = np.arange(8.0)  # 1 fps, 8 s
    values = np.arange(8.0)[:, None] * np.ones((1, 3))
    four = tm.resample_to_clips(values, times, tm.clip_grid(8.0, 4))
    assert np.allclose(four[:, 0], [0.5, 2.5, 4.5, 6.5])
    sixteen = tm.resample_to_clips(values, times, tm.clip_grid(8.0, 16))  # more clips than frames: nearest
    assert np.allclose(sixteen[:, 0], np.repeat(np.arange(8.0), 2))


def test_default_num_clips_follows_duration():
    assert tm.default_num_clips(30.7) == 32
    assert tm.default_num_clips(78.4) == 64
    assert tm.default_num_clips(5.0) == 16
    assert tm.default_num_clips(3600.0) == 128


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_pooled_cell_features_against_brute_force(mode):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    mask = tm.sparse_moment_mask(10) & tm.dense_moment_mask(10, max_clips=6)
    got = tm.pool_cell_features(x, mask, mode)
    for a in range(10):
        for b in range(10):
            want = (x[a:b + 1].max(0) if mode == "max" else x[a:b + 1].mean(0)) if mask[a, b] else np.zeros(4)
            assert np.allclose(got[a, b], want, atol=1e-6)


def test_map_json_has_null_for_invalid_cells():
    ct = tm.clip_grid(16.0, 16)
    scores = np.where(tm.dense_moment_mask(16), 1.0, np.nan)
    doc = tm.TemporalMap(16, ct, scores, tm.dense_moment_mask(16)).to_dict()
    assert doc["num_clips"] == 16 and len(doc["clip_times"]) == 16 and doc["clip_times"][1] == [1.0, 2.0]
    assert doc["scores"][5][2] is None and doc["scores"][2][5] == 1.0
