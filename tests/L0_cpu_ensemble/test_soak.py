"""The soak's short version (benchmarks/soak.py has the long one): mixed good and bad requests
under concurrency against the session's server, every answer checked against its own images (none
lost, duplicated or swapped; every bad request refused with its message), the server's and its
stubs' memory sampled throughout and reported."""

from conftest import MATCH_REPORT

from benchmarks.soak import soak

REQUESTS, CONCURRENCY = 400, 8


def test_short_soak(triton, test_images):
    photos = [p.read_bytes() for p in test_images[:24]]
    report = soak(triton.grpc_url, "yolov11_nano", photos, REQUESTS, CONCURRENCY, triton.process.pid)
    MATCH_REPORT.append(f"soak (short): {report.summary()}")
    assert report.wrong == []
    assert report.differing == 0  # on the CPU, every answer is exactly the image's answer alone
    assert report.served + report.refused == REQUESTS and report.refused == REQUESTS // 4
    assert len(report.samples) > 5 and all(s["server_rss"] > 0 and s["stubs_rss"] > 0 for _, s in report.samples)
    # the server's RSS in its parts: its own pages, and those of the stubs' regions it maps
    assert all(0 < s["server_rss_shmem"] <= s["server_shm_mapped"] for _, s in report.samples)
    assert all(0 < s["server_rss_anon"] < s["server_rss"] for _, s in report.samples)
