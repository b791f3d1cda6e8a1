"""`stac-fetch` end to end: the fake STAC API, real PostgreSQL, moto SQS and real Redis."""

from __future__ import annotations

import datetime as dt
import json
import socket
import types
from pathlib import Path

import boto3
import pytest
import redis
from moto import mock_aws
from sqlalchemy import Engine, text

from link_fetcher.cli import main
from tests.fakes.stac_api import DROP, FakeStacApi, stac_item
from tests.schema import assert_valid_message

COLLECTION = "sentinel-2-l2a"
T0 = dt.datetime(2024, 9, 1, tzinfo=dt.UTC)
AOI = "10,45,12,47"
TEN_DAYS = "2024-09-01/2024-09-10"  # the end date is included: [09-01, 09-11)


def area_items(count: int = 300, *, every: dt.timedelta = dt.timedelta(minutes=48)) -> list[dict]:
    """`count` items in the AOI from T0 on; at 48 minutes apart, 300 fill ten days and one falls on each midnight."""
    tiles = ("32TNS", "32TPS", "33TUM")
    return [
        stac_item(COLLECTION, sensed=T0 + i * every, tile=tiles[i % 3], cloud=float(i % 50), sequence=i)
        for i in range(count)
    ]


def noise_items() -> list[dict]:
    """Items the search must not record: outside the AOI, outside the range, another collection."""
    far = [
        stac_item(COLLECTION, sensed=T0 + dt.timedelta(hours=i), bbox=(100, 10, 101, 11), sequence=1000 + i)
        for i in range(20)
    ]
    late = [stac_item(COLLECTION, sensed=T0 + dt.timedelta(days=10, hours=i), sequence=2000 + i) for i in range(5)]
    other = [stac_item("sentinel-2-l1c", sensed=T0 + dt.timedelta(hours=i), sequence=3000 + i) for i in range(5)]
    return far + late + other


@pytest.fixture
def stac_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env, no watches.toml
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STAC_PAGE_SIZE", "10")
    monkeypatch.setenv("STAC_HTTP_ATTEMPTS", "2")
    for key in ("TO_DOWNLOAD_QUEUE_URL", "REDIS_URL", "STAC_WATCHES_FILE"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def fake_api():
    with FakeStacApi(
        area_items() + noise_items(), collections=(COLLECTION, "sentinel-2-l1c"), default_limit=10
    ) as fake:
        yield fake


@pytest.fixture
def sqs_queue(aws_env, monkeypatch: pytest.MonkeyPatch):
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        queue_url = client.create_queue(QueueName="to-download")["QueueUrl"]
        monkeypatch.setenv("TO_DOWNLOAD_QUEUE_URL", queue_url)
        yield client, queue_url


def receive_all(client, queue_url: str) -> list[dict]:
    bodies = []
    while batch := client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages"
    ):
        bodies.extend(json.loads(message["Body"]) for message in batch)
        client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return bodies


def granules(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(text("SELECT * FROM granule ORDER BY sensing_start")).mappings()]


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_records_each_item_once_delivers_selected_bands_and_a_rerun_sends_nothing(
    stac_env, engine: Engine, fake_api: FakeStacApi, sqs_queue, redis_url: str, unique_name: str, monkeypatch, capsys
) -> None:
    client, queue_url = sqs_queue
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_STREAM", unique_name)
    argv = ["stac-fetch", "--api", fake_api.url, "--collection", COLLECTION, "--bbox", AOI]
    argv += ["--datetime", TEN_DAYS, "--assets", "red,nir"]

    assert main(argv) == 0
    out = capsys.readouterr().out

    rows = granules(engine)
    expected = {f"{COLLECTION}/{item['id']}" for item in area_items()}
    assert {row["id"] for row in rows} == expected and len(rows) == 300
    first = rows[0]
    assert first["source"] == "stac" and first["collection"] == COLLECTION
    assert first["download_url"] == f"{fake_api.url}/collections/{COLLECTION}/items/{first['filename']}"
    assert first["tile_id"] == "32TNS" and first["platform"] == "S2B" and first["sensing_start"] == T0
    assert first["cloud_cover"] == 0.0
    assert set(first["assets"]) == {"red", "nir"} and first["assets"]["red"].endswith("/red.tif")
    assert first["item"]["id"] == first["filename"] and len(first["item"]["assets"]) == 10  # the full item kept
    # Every page was followed: 10 windows of 30 (31 with the next midnight's item), 10 per page.
    assert sum(1 for _, parameters in fake_api.searches if "token" in parameters) >= 20
    # Each inner midnight's item comes back in two windows and is recorded once; the item exactly at the
    # range end (a noise item) belongs to the next range.
    assert "300 new" in out and "skipped 10 outside window" in out

    bodies = receive_all(client, queue_url)
    assert sorted(body["id"] for body in bodies) == sorted(expected)
    for body in bodies:
        assert_valid_message(body)
        assert set(body["assets"]) == {"red", "nir"} and body["collection"] == COLLECTION
        assert body["href"] == body["download_url"] and body["source"] == "stac"
    stream = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = stream.xrange(unique_name)
        assert len(entries) == 300
        fields = entries[0][1]
        assert fields["type"] == "link-fetcher.stac-item.found" and fields["href"].startswith(fake_api.url)
        assert set(json.loads(fields["data"])["assets"]) == {"red", "nir"}

        assert main(argv) == 0  # the same range again: nothing new is recorded or sent
        assert count(engine, "granule") == 300 and receive_all(client, queue_url) == []
        assert stream.xlen(unique_name) == 300
    finally:
        stream.delete(unique_name)
        stream.close()


def test_get_only_api_with_geojson_aoi_and_half_day_windows(stac_env, engine: Engine, tmp_path: Path, capsys) -> None:
    aoi = tmp_path / "aoi.geojson"
    polygon = [[[10, 45], [12, 45], [12, 47], [10, 47], [10, 45]]]
    aoi.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": polygon}}
                ],
            }
        )
    )
    with FakeStacApi(area_items(60) + noise_items(), search_methods=("GET",), collections=(COLLECTION,)) as fake:
        argv = ["stac-fetch", "--api", fake.url, "--collection", COLLECTION, "--intersects", str(aoi)]
        assert main([*argv, "--datetime", "2024-09-01/2024-09-02", "--window", "12h"]) == 0
        assert {method for method, _ in fake.searches} == {"GET"}
        assert any("token" in parameters for _, parameters in fake.searches)
        assert all(parameters["intersects"]["type"] == "Polygon" for _, parameters in fake.searches)
    rows = granules(engine)
    assert len(rows) == 60  # 2 days of items every 48 minutes
    assert all(len(row["assets"]) == 10 for row in rows)  # no --assets: every asset is delivered


def test_item_on_a_window_boundary_is_recorded_once(stac_env, engine: Engine, capsys) -> None:
    boundary = stac_item(COLLECTION, sensed=T0 + dt.timedelta(days=1), sequence=1)
    inside = stac_item(COLLECTION, sensed=T0 + dt.timedelta(hours=23), sequence=2)
    with FakeStacApi([boundary, inside]) as fake:
        argv = ["stac-fetch", "--api", fake.url, "--collection", COLLECTION, "--bbox", AOI, "--window", "1d"]
        assert main([*argv, "--datetime", "2024-09-01/2024-09-02"]) == 0
        assert len(fake.searches) == 2  # one window a day, each one page
    assert sorted(row["filename"] for row in granules(engine)) == sorted([boundary["id"], inside["id"]])
    assert count(engine, "outbox") == 2
    assert "1 outside window" in capsys.readouterr().out


@pytest.mark.parametrize("query_extension", [True, False])
def test_max_cloud_keeps_clear_items_with_or_without_the_query_extension(
    stac_env, engine: Engine, query_extension: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Items of unknown cover dropped: the limit can go to the API too (kept, it cannot: see the next test).
    monkeypatch.setenv("STAC_KEEP_UNKNOWN_CLOUD", "false")
    with FakeStacApi(area_items(60), query_extension=query_extension) as fake:
        argv = ["stac-fetch", "--api", fake.url, "--collection", COLLECTION, "--bbox", AOI]
        assert main([*argv, "--datetime", "2024-09-01/2024-09-02", "--max-cloud", "9.5"]) == 0
        sent_query = any("query" in parameters for _, parameters in fake.searches)
    assert sent_query is query_extension  # the strict fake answers 400 to a query it does not offer
    clouds = [row["cloud_cover"] for row in granules(engine)]
    assert clouds and max(clouds) <= 9.5
    assert len(clouds) == sum(1 for item in area_items(60) if item["properties"]["eo:cloud_cover"] <= 9.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--collection", "sentinel-1-grd"], "unknown collection 'sentinel-1-grd'"),
        (["--assets", "red,infrared"], "unknown band(s) infrared: item S2B_32TNS_20240901_0_L2A has assets blue"),
        (["--bbox", "10,47,12,45"], "miny 47 is above maxy 45"),
        (["--bbox", "10,45,12"], "expected four numbers"),
        (["--bbox", "10,45,200,47"], "longitude 200 is outside"),
        (["--datetime", "2024-09-10/2024-09-01"], "is not after its start"),
        (["--datetime", "yesterday/today"], "bad date or datetime"),
        (["--window", "6 hours"], "bad duration"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_recorded(
    stac_env, engine: Engine, fake_api: FakeStacApi, capsys, options: list[str], message: str
) -> None:
    argv = {"--api": fake_api.url, "--collection": COLLECTION, "--bbox": AOI, "--datetime": TEN_DAYS}
    overridden = dict(zip(options[::2], options[1::2], strict=True))
    if "--collection" in overridden:
        argv["--collection"] = overridden.pop("--collection")
    argv.update(overridden)
    assert main(["stac-fetch", *[part for pair in argv.items() for part in pair]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert count(engine, "granule") == 0


def test_unknown_collection_lists_the_apis_collections(stac_env, fake_api: FakeStacApi, capsys) -> None:
    argv = ["stac-fetch", "--api", fake_api.url, "--collection", "s2", "--bbox", AOI, "--datetime", TEN_DAYS]
    assert main(argv) == 2
    assert "(it has: sentinel-2-l1c, sentinel-2-l2a)" in capsys.readouterr().err


def test_unknown_band_is_caught_from_the_collections_item_assets(stac_env, engine: Engine, capsys) -> None:
    with FakeStacApi(area_items(5), item_assets=True) as fake:
        argv = ["stac-fetch", "--api", fake.url, "--collection", COLLECTION, "--bbox", AOI]
        assert main([*argv, "--datetime", TEN_DAYS, "--assets", "B04"]) == 2
        assert fake.searches == []  # found out before any search
    assert "unknown band(s) B04: collection sentinel-2-l2a (item_assets) has assets" in capsys.readouterr().err
    assert count(engine, "granule") == 0


@pytest.mark.parametrize(
    "geojson", ["{not json", '{"type": "Polygon", "coordinates": [[[10, 45], [12, 45], [10, 45]]]}']
)
def test_bad_geojson_exits_2(stac_env, engine: Engine, fake_api, tmp_path: Path, capsys, geojson: str) -> None:
    aoi = tmp_path / "bad.geojson"
    aoi.write_text(geojson)
    argv = ["stac-fetch", "--api", fake_api.url, "--collection", COLLECTION, "--intersects", str(aoi)]
    assert main([*argv, "--datetime", TEN_DAYS]) == 2
    err = capsys.readouterr().err
    assert "bad.geojson" in err and err.count("\n") == 1
    assert count(engine, "granule") == 0


def test_unreachable_api_exits_2(stac_env, engine: Engine, capsys) -> None:
    api = f"http://127.0.0.1:{free_port()}"
    assert main(["stac-fetch", "--api", api, "--collection", COLLECTION, "--bbox", AOI, "--datetime", TEN_DAYS]) == 2
    err = capsys.readouterr().err
    assert f"cannot open STAC API {api}" in err and err.count("\n") == 1
    assert count(engine, "granule") == 0


def test_conflicting_or_missing_options_exit_2(stac_env, fake_api, capsys) -> None:
    assert main(["stac-fetch", "--watch", "alps", "--api", fake_api.url]) == 2
    assert "drop the search options" in capsys.readouterr().err
    assert main(["stac-fetch", "--api", fake_api.url, "--collection", COLLECTION, "--datetime", TEN_DAYS]) == 2
    assert "exactly one of --bbox and --intersects" in capsys.readouterr().err
    assert main(["stac-fetch", "--api", fake_api.url, "--bbox", AOI]) == 2


def test_rate_limit_and_server_errors_are_retried(stac_env, engine: Engine, fake_api: FakeStacApi) -> None:
    fake_api.fail_next(429, after=3)
    fake_api.fail_next(503, after=2)
    argv = ["stac-fetch", "--api", fake_api.url, "--collection", COLLECTION, "--bbox", AOI, "--datetime", TEN_DAYS]
    assert main(argv) == 0
    assert count(engine, "granule") == 300


def test_connection_dropped_mid_body_is_retried(stac_env, engine: Engine, fake_api: FakeStacApi) -> None:
    fake_api.fail_next(DROP, after=4)
    argv = ["stac-fetch", "--api", fake_api.url, "--collection", COLLECTION, "--bbox", AOI, "--datetime", TEN_DAYS]
    pages = 40  # ten windows of 31 items (the next midnight's included), 10 per page
    assert main(argv) == 0
    assert count(engine, "granule") == 300
    assert len(fake_api.searches) == pages + 1  # the cut-off page was asked again


def test_api_failing_mid_run_keeps_and_delivers_what_was_recorded_and_a_rerun_finishes(
    stac_env, engine: Engine, fake_api: FakeStacApi, sqs_queue, capsys
) -> None:
    client, queue_url = sqs_queue
    fake_api.fail_next(500, count=2, after=12)  # STAC_HTTP_ATTEMPTS=2: the 13th search fails for good
    argv = ["stac-fetch", "--api", fake_api.url, "--collection", COLLECTION, "--bbox", AOI, "--datetime", TEN_DAYS]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "HTTP 500" in err and "run the same range again" in err and "Traceback" not in err
    recorded = count(engine, "granule")
    assert 0 < recorded < 300
    assert len(receive_all(client, queue_url)) == recorded
    assert main(argv) == 0
    assert count(engine, "granule") == 300 and len(receive_all(client, queue_url)) == 300 - recorded


WATCHES = """
[[watch]]
name = "area"
api = "{api}"
collections = ["sentinel-2-l2a"]
bbox = [10, 45, 12, 47]
bands = ["red", "green", "nir"]
max_cloud = 20
lookback = "2d"
window = "12h"

[[watch]]
name = "by-file"
api = "{api}"
collections = ["sentinel-2-l2a"]
aoi = "aoi.geojson"
lookback = "1d"
"""


@pytest.fixture
def watches_file(tmp_path: Path, fake_api: FakeStacApi) -> Path:
    polygon = [[[10, 45], [12, 45], [12, 47], [10, 47], [10, 45]]]
    (tmp_path / "aoi.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": polygon}))
    path = tmp_path / "watches.toml"
    path.write_text(WATCHES.format(api=fake_api.url))
    return path


def test_watch_by_name_uses_its_area_bands_and_cloud_limit(stac_env, engine: Engine, watches_file: Path) -> None:
    assert main(["stac-fetch", "--watch", "area", "--datetime", "2024-09-03/2024-09-04"]) == 0
    rows = granules(engine)
    in_range = [i for i in area_items() if "2024-09-03" <= i["properties"]["datetime"] < "2024-09-05"]
    assert len(rows) == sum(1 for i in in_range if i["properties"]["eo:cloud_cover"] <= 20)
    assert all(set(row["assets"]) == {"red", "green", "nir"} for row in rows)


def test_all_watches_and_unknown_watch(stac_env, engine: Engine, watches_file: Path, capsys) -> None:
    assert main(["stac-fetch", "--all", "--datetime", "2024-09-01/2024-09-01"]) == 0
    assert count(engine, "granule") == 30  # by-file records every item of the day; area's are a subset
    out = capsys.readouterr().out
    assert "area" in out and "by-file" in out
    assert main(["stac-fetch", "--watch", "nowhere"]) == 2
    assert "unknown watch nowhere" in capsys.readouterr().err


def test_bad_watches_file_exits_2(stac_env, tmp_path: Path, capsys) -> None:
    path = tmp_path / "watches.toml"
    path.write_text('[[watch]]\nname = "x"\napi = "ftp://nope"\ncollections = []\nbbox = [1, 2, 3, 4]\n')
    assert main(["stac-fetch", "--all"]) == 2
    err = capsys.readouterr().err
    assert "watch x" in err and "api" in err and "collections" in err and err.count("\n") == 1
    assert main(["stac-fetch", "--all", "--watches-file", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read watches file" in capsys.readouterr().err


def test_lambda_runs_a_watch_and_a_rerun_records_nothing(
    stac_env, engine: Engine, watches_file: Path, monkeypatch
) -> None:
    from lambdas.stac_fetcher import handler as stac_lambda

    monkeypatch.setenv("STAC_WATCHES_FILE", str(watches_file))
    context = types.SimpleNamespace(
        function_name="stac", memory_limit_in_mb=256, invoked_function_arn="arn:aws:lambda:x", aws_request_id="r1"
    )
    event = {"watch": "by-file", "datetime": "2024-09-02/2024-09-03"}
    result = stac_lambda.handler(event, context)
    assert result["watch"] == "by-file"
    assert result["datetime"] == "2024-09-02T00:00:00Z/2024-09-04T00:00:00Z"
    (summary,) = result["collections"]
    assert summary["recorded"] == 60 and summary["known"] == 0 and result["pending"] == 60  # no sink
    again = stac_lambda.handler(event, context)
    assert again["collections"][0]["recorded"] == 0 and again["collections"][0]["known"] == 60
    with pytest.raises(ValueError, match="watch"):
        stac_lambda.handler({}, context)


def test_real_items_of_five_services_are_recorded_as_their_sources_mean_them(stac_env, engine: Engine, capsys) -> None:
    """Real items written by others (tests/fixtures/sources.md) served by the fake API and fetched end to end:
    each row has the tile, platform, type and sensing range its service means (GEODES' `datetime` is 15 hours
    after the acquisition, the contributing-mission item's years after it: start stays before end, as the
    CHECK asks), and CDSE's Sentinel-1 item is skipped as another mission's."""
    fixtures = Path(__file__).parent / "fixtures"
    documents = [
        "geodes/stac-search-s2-l1c.json",
        "earth-search/v1-search-s2-l1c.json",
        "planetary-computer/item-s2-l2a.json",
        "cdse/stac-item-ccm-s2a-msi.json",
        "cdse/stac-item-s1-grd.json",
    ]
    items = []
    for document in (json.loads((fixtures / name).read_text()) for name in documents):
        items.append(document["features"][0] if document.get("type") == "FeatureCollection" else document)
    collections = tuple(item["collection"] for item in items)
    with FakeStacApi(items, collections=collections) as fake:
        argv = ["stac-fetch", "--api", fake.url, "--bbox", "-180,-90,180,90"]
        argv += ["--datetime", "2019-01-01/2025-12-31", "--window", "400w"]
        argv += [option for collection in collections for option in ("--collection", collection)]
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "other_mission" in out

    seen = {
        row["collection"]: (
            row["tile_id"],
            row["platform"],
            row["product_type"],
            row["sensing_start"].isoformat(),
            row["sensing_end"].isoformat(),
        )
        for row in granules(engine)
    }
    assert seen == {
        "PEPS_S2_L1C": (
            "14ULD",
            "S2A",
            "S2MSI1C",
            "2025-04-02T17:57:41.024000+00:00",
            "2025-04-02T17:57:41.024000+00:00",
        ),
        "sentinel-2-l1c": (
            "27VWK",
            "S2B",
            "S2MSI1C",
            "2024-02-06T13:14:11.918000+00:00",
            "2024-02-06T13:14:11.918000+00:00",
        ),
        "sentinel-2-l2a": (
            "06VVN",
            "S2B",
            "S2MSI2A",
            "2019-06-29T21:25:29.024000+00:00",
            "2019-06-29T21:25:29.024000+00:00",
        ),
        "ccm-optical": (None, "S2A", "MSI_IM__1C", "2015-07-04T10:10:01+00:00", "2015-07-04T10:13:45+00:00"),
    }
