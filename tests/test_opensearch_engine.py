"""OpenSearch is the real engine: geo_shape, dates, keywords, bulk, aggregations, aliases."""

import uuid

from opensearchpy import helpers

from proxima import opensearch


def test_real_engine_features(stack, os_client):
    info = os_client.info()
    assert info["version"]["number"].startswith("2.19")
    prefix = f"engine-{uuid.uuid4().hex[:8]}"
    mapping = {
        "properties": {
            "area": {"type": "geo_shape"},
            "when": {"type": "date"},
            "kind": {"type": "keyword"},
        }
    }
    a, b = f"{prefix}-a", f"{prefix}-b"
    for name in (a, b):
        os_client.indices.create(index=name, body={"mappings": mapping})
    docs = [
        {
            "_index": a,
            "_id": "pacific",
            "kind": "sea",
            "when": "2020-01-05",
            "area": opensearch_envelope(170, -10, -170, 10),
        },
        {
            "_index": a,
            "_id": "alps",
            "kind": "land",
            "when": "2020-02-01",
            "area": opensearch_envelope(5, 44, 15, 48),
        },
        {
            "_index": a,
            "_id": "sahara",
            "kind": "land",
            "when": "2021-06-01",
            "area": opensearch_envelope(-10, 15, 30, 30),
        },
    ]
    ok, errors = helpers.bulk(os_client, docs, refresh=True)
    assert ok == 3 and not errors

    def ids(query):
        hits = os_client.search(index=a, body={"query": query})["hits"]["hits"]
        return sorted(h["_id"] for h in hits)

    geo = {
        "geo_shape": {
            "area": {"shape": opensearch_envelope(179, -1, -179, 1), "relation": "intersects"}
        }
    }
    assert ids(geo) == ["pacific"]
    assert ids({"range": {"when": {"gte": "2020-01-15", "lte": "2020-12-31"}}}) == ["alps"]
    aggs = os_client.search(index=a, body={"size": 0, "aggs": {"k": {"terms": {"field": "kind"}}}})
    assert {x["key"]: x["doc_count"] for x in aggs["aggregations"]["k"]["buckets"]} == {
        "land": 2,
        "sea": 1,
    }

    alias = f"{prefix}-alias"
    os_client.indices.update_aliases(body={"actions": [{"add": {"index": a, "alias": alias}}]})
    assert opensearch.swap_alias(os_client, alias, b) == a
    assert opensearch.alias_target(os_client, alias) == b
    assert os_client.count(index=alias)["count"] == 0
    os_client.indices.delete(index=f"{prefix}-*")


def opensearch_envelope(w, s, e, n):
    from proxima.catalog.geo import envelope

    return envelope(w, s, e, n)
