"""Input sharder: every video in exactly one shard, shards never above the shard size, no lone tail shard."""

from __future__ import annotations

import pytest

from moclip.sharding import make_shards


@pytest.mark.parametrize(("n", "size", "workers"), [(200, 16, 2), (200, 16, None), (7, 3, 4), (1, 16, 2), (0, 16, 2),
                                                   (33, 1, 2), (1000, 16, 3), (64, 16, 2), (40, 16, 4)])
def test_shards_cover_every_video_once_and_balance_the_workers(n, size, workers):
    videos = [{"video_id": f"v{i:04d}"} for i in range(n)]
    shards = make_shards(videos, size, "run", workers)
    assert [v for s in shards for v in s.videos] == videos  # consecutive, in order, each once
    assert all(1 <= len(s.videos) <= size for s in shards)
    assert len({s.name for s in shards}) == len(shards)
    if shards:
        lens = [len(s.videos) for s in shards]
        split = workers and len(lens) >= 3 * workers and max(lens[-2 * workers:]) <= (max(lens) + 1) // 2
        body = lens[:-2 * workers] if split else lens
        assert max(body) - min(body) <= 1  # near-equal: no short tail shard
        if split:  # the last round, cut in halves: workers finish within about half a shard of each other
            assert max(lens[-2 * workers:]) - min(lens[-2 * workers:]) <= 1
        if workers and len(shards) > 1 and n >= workers:
            assert len(shards) % workers == 0 or len(shards) == n


def test_two_hundred_videos_on_two_workers():
    lens = [len(s.videos) for s in make_shards([{"video_id": str(i)} for i in range(200)], 16, "r", 2)]
    assert lens[:12] == [14, 14, 14, 15, 14, 14, 15, 14, 14, 14, 15, 14] and lens[12:] == [7, 7, 7, 8]
    assert [len(s.videos) for s in make_shards([{}] * 200, 16, "r", None)] == [15, 15, 16, 15, 15, 16, 15, 16, 15, 15,
                                                                              16, 15, 16]  # unknown workers: no cut
    assert [len(s.videos) for s in make_shards([{}] * 8, 3, "r", 2)] == [2, 2, 2, 2]  # too small to be worth a cut


def test_bad_shard_size():
    with pytest.raises(ValueError, match="shard_size"):
        make_shards([], 0, "r")


def test_a_shard_plan_round_trips_through_its_file(tmp_path):
    from moclip.sharding import load_shards, save_shards

    shards = make_shards([{"video_id": f"v{i}", "path": f"/x/v{i}.mp4", "label": None} for i in range(50)], 16, "r", 2)
    save_shards(shards, tmp_path / "plan.json")
    assert load_shards(tmp_path / "plan.json") == shards
