#!/usr/bin/python3
"""A Python SSE client the way common Python libraries read a stream (stdlib only: Debian has no
python3-httpx-sse). Its dispatch rule is httpx-sse's (SSEDecoder.decode): on a blank line it yields an
event when *any* of event, data, id or retry was set -- unlike a browser, which dispatches nothing
without data. So a block holding only `retry:` becomes an empty `message` here, as it does for httpx-sse
users. Lines are split on CR, LF and CRLF like the spec says.

usage: sse-python-client.py <url> <events to read> [Header: value ...]
prints one JSON object per yielded event: {"event", "data", "id", "retry"}
"""
import json
import sys
import urllib.request


def lines(resp):
    pending = b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            return
        pending += chunk
        while True:
            cut = [i for i in (pending.find(b"\r"), pending.find(b"\n")) if i >= 0]
            if not cut:
                break
            i = min(cut)
            if pending[i:i + 1] == b"\r" and i + 1 == len(pending):
                break  # a CR at the end of the chunk may be half of a CRLF
            line, rest = pending[:i], pending[i + 1:]
            if pending[i:i + 2] == b"\r\n":
                rest = pending[i + 2:]
            pending = rest
            yield line.decode("utf-8")


def events(resp):
    event, data, last_id, retry = "", [], "", None
    for line in lines(resp):
        if not line:
            if not event and not data and not last_id and retry is None:
                continue
            yield {"event": event or "message", "data": "\n".join(data), "id": last_id, "retry": retry}
            event, data, retry = "", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            if "\0" not in value:
                last_id = value
        elif field == "retry":
            try:
                retry = int(value)
            except ValueError:
                pass


def main():
    url, want = sys.argv[1], int(sys.argv[2])
    req = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
    for h in sys.argv[3:]:
        k, _, v = h.partition(":")
        req.add_header(k.strip(), v.strip())
    with urllib.request.urlopen(req, timeout=60) as resp:
        n = 0
        for ev in events(resp):
            print(json.dumps(ev), flush=True)
            n += 1
            if n >= want:
                return


main()
