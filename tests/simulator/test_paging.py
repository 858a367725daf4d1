"""Cursor paging (X-OG-API-VERSION: 2), paging while data changes, and page-number paging."""

from __future__ import annotations

import base64
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

import pytest

from ogsync.endpoints import BY_NAME, ENDPOINTS

ALL_PARAMS = {
    "products": {"autoship_enabled": "all", "allow_discontinued": "true"},
    "offer_profiles": {"status": "all"},
}


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_cursor_page_shape_and_default_size(api):
    body = api.page("orders")
    assert list(body) == ["next", "previous", "results"]
    assert len(body["results"]) == 10
    assert body["previous"] is None
    assert body["next"].startswith(f"{api.url}/orders/?")
    assert set(query(body["next"])) == {"cursor"}


@pytest.mark.parametrize(("asked", "served"), [(500, 100), (100, 100), (37, 37), (1, 1)])
def test_page_size_is_capped_at_100(api, asked, served):
    assert len(api.page("items", {"page_size": asked})["results"]) == served


def test_bad_page_size_means_the_default(api):
    assert len(api.page("items", {"page_size": "lots"})["results"]) == 10
    assert len(api.page("items", {"page_size": 0})["results"]) == 10


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_following_next_walks_every_record_exactly_once(api, ep):
    params = {"page_size": 50, **ALL_PARAMS.get(ep.name, {})}
    seen: list[str] = []
    pages = 0
    for body in api.pages(ep.name, params):
        assert list(body) == ["next", "previous", "results"]
        assert len(body["results"]) <= 50
        seen += api.ids(ep, body["results"])
        pages += 1
        if body["next"]:
            assert len(body["results"]) == 50
            q = query(body["next"])
            assert q.pop("cursor")
            assert q == {k: [str(v)] for k, v in params.items()}
    truth = api.ids(ep, api.truth(ep.name))
    assert len(seen) == len(set(seen)), "a record was served twice"
    assert set(seen) == set(truth)
    assert pages == -(-len(truth) // 50)


def test_next_repeats_the_filters(api):
    params = {"updated_start": "2020-01-01", "updated_end": "2030-01-01T00:00:00", "status": 5}
    body = api.page("orders", params)
    q = query(body["next"])
    assert q.pop("cursor")
    assert q == {
        "updated_start": ["2020-01-01"],
        "updated_end": ["2030-01-01T00:00:00"],
        "status": ["5"],
    }
    walked = api.walk("orders", params)
    assert walked and all(o["status"] == 5 for o in walked)
    assert len(walked) == sum(o["status"] == 5 for o in api.truth("orders"))


def test_previous_links_walk_back_through_the_same_pages(api):
    forward = list(api.pages("subscriptions", {"page_size": 25}))
    assert len(forward) >= 4
    assert forward[0]["previous"] is None
    assert all(body["previous"] for body in forward[1:])
    back = [forward[-1]]
    while back[-1]["previous"]:
        back.append(api.follow(back[-1]["previous"]))
    back.reverse()
    assert [b["results"] for b in back] == [f["results"] for f in forward]
    # A page reached backwards leads forward to the page after it.
    assert api.follow(back[1]["next"])["results"] == forward[2]["results"]
    assert query(back[1]["previous"]).keys() == {"cursor", "page_size"}


@pytest.mark.parametrize(
    "cursor", ["not-a-cursor!", "====", base64.b64encode(b"hello").decode(), "cD1hJmk9Yg=="]
)
def test_invalid_cursor_is_404(api, cursor):
    response = api.list("orders", {"cursor": cursor})
    assert response.status_code == 404
    body = response.json()
    assert list(body) == ["detail"] and body["detail"]


def test_cursor_is_opaque_base64(api):
    body = api.page("customers")
    token = query(body["next"])["cursor"][0]
    base64.b64decode(token, validate=True)
    assert api.follow(body["next"])["results"] != body["results"]


# -- paging while the data changes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("ep_name", "size"), [("orders", 100), ("items", 100), ("subscriptions", 40), ("customers", 20)]
)
def test_paging_while_changes_happen_misses_no_unchanged_record(make_api, ep_name, size):
    with make_api(seed=11, records=4000) as api:
        ep = next(e for e in ENDPOINTS if e.name == ep_name)
        field = ep.update_field
        start = {r[ep.key]: r for r in api.truth(ep_name)}
        sightings: dict[str, list[dict]] = defaultdict(list)
        # Pages must outrun the changes (20 a step) for the walk to end.
        body = api.page(ep_name, {"page_size": size})
        steps = 0
        while steps < 200:
            for record in body["results"]:
                sightings[record[ep.key]].append(record)
            api.advance(minutes=1, changes=20)
            steps += 1
            if not body["next"]:
                break
            body = api.follow(body["next"])
        assert 5 < steps < 200
        final = {r[ep.key]: r for r in api.truth(ep_name)}
        gone = set(api.deleted(ep_name))
        assert not gone & set(final)

        unchanged = [k for k, r in start.items() if k in final and final[k][field] == r[field]]
        changed = [k for k in start if k in final and k not in unchanged]
        assert len(unchanged) > len(start) // 2
        assert changed, "the walk saw no changes at all"
        for key in unchanged:
            assert len(sightings[key]) == 1, f"{key} seen {len(sightings[key])} times"
            assert sightings[key][0] == final[key]
        # A record seen again was seen with a newer update time each time.
        repeated = 0
        for key, seen in sightings.items():
            stamps = [r[field] for r in seen]
            assert stamps == sorted(set(stamps)), f"{key}: {stamps}"
            repeated += len(seen) > 1
        # Nothing that existed at the start and still exists was skipped.
        skipped = [k for k in start if k in final and k not in sightings]
        assert not skipped, f"{len(skipped)} of {len(changed)} changed records never seen"


# -- page-number mode ------------------------------------------------------------------------


def test_page_number_mode_without_the_version_header(api):
    total = len(api.truth("orders"))
    response = api.get("/orders/")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["count", "next", "previous", "results"]
    assert body["count"] == total
    assert body["previous"] is None
    assert query(body["next"]) == {"page": ["2"]}
    assert len(body["results"]) == 10

    second = api.get(body["next"]).json()
    assert query(second["previous"]) == {"page": ["1"]}
    assert not {o["public_id"] for o in second["results"]} & {
        o["public_id"] for o in body["results"]
    }

    last_page = -(-total // 100)
    seen = []
    for number in range(1, last_page + 1):
        page = api.get("/orders/", params={"page": number, "page_size": 100}).json()
        seen += api.ids("orders", page["results"])
    assert page["next"] is None
    assert sorted(seen) == sorted(api.ids("orders", api.truth("orders")))

    for bad in (last_page + 1, 0, -1, "x"):
        response = api.get("/orders/", params={"page": bad, "page_size": 100})
        assert response.status_code == 404, bad
        assert list(response.json()) == ["detail"]


def test_page_number_mode_counts_after_filters(api):
    body = api.get("/orders/", params={"status": 1}).json()
    assert body["count"] == sum(o["status"] == 1 for o in api.truth("orders"))
    assert query(body["next"]) == {"page": ["2"], "status": ["1"]}


def test_a_filtered_page_costs_no_more_deep_in_a_walk(api):
    """A page is read from its cursor on, not from its range filter's start: the cost of a
    page (SQLite's steps) stays flat however deep the walk, as it does on the real API."""
    store, items = api.sim.store, BY_NAME["items"]
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    def cost(after: tuple[int, str] | None) -> int:
        nonlocal steps
        steps = 0
        store.conn.set_progress_handler(count, 10)
        try:
            rows = store.page(items, ["sort_ts >= ?"], [0], after=after, limit=10)
        finally:
            store.conn.set_progress_handler(None, 10)
        assert len(rows) == 10
        return steps

    (total,) = store.conn.execute("SELECT count(*) FROM items").fetchone()
    deep = store.page(items, [], [], offset=total - 20, limit=1)[0]
    assert total > 1000
    assert cost((deep.sort_ts, deep.id)) < 2 * cost(None)
