#!/usr/bin/python3
"""The talk's aggregation on Dask: page views, distinct visitors and per-referrer counts per
(customer, url, hour), from JSON lines, on 2 single-threaded worker processes. Writes the JSON
sink's record format, one line per group.

    dask_hourly.py EVENTS.jsonl OUT.jsonl
"""
import json
import sys

import dask
import dask.dataframe as dd


def main():
    events, out = sys.argv[1], sys.argv[2]
    dask.config.set(scheduler="processes", num_workers=2)
    df = dd.read_json(events, lines=True, blocksize=32 * 2**20,
                      dtype={"customer": str, "url": str, "referrer": str,
                             "session_id": str, "ts": str})
    df["hour"] = df["ts"].str.slice(0, 13)
    keys = ["customer", "url", "hour"]
    views = df.groupby(keys).size()
    visitors = df.groupby(keys)["session_id"].nunique()
    referrers = df.groupby(keys + ["referrer"]).size()
    views, visitors, referrers = dask.compute(views, visitors, referrers)
    refs = {}
    for (customer, url, hour, referrer), n in referrers.items():
        refs.setdefault((customer, url, hour), {})[referrer] = int(n)
    with open(out, "w") as f:
        for (customer, url, hour), n in views.items():
            ts = hour + ":00:00"
            f.write(json.dumps({
                "_id": f"{url}|{customer}|{ts}", "customer": customer, "url": url,
                "freq": "1hour", "ts": ts,
                "metrics": {"page_views": int(n),
                            "visitors": int(visitors[(customer, url, hour)])},
                "referrers": dict(sorted(refs[(customer, url, hour)].items())),
            }) + "\n")


if __name__ == "__main__":
    main()
