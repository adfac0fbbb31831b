"""Reference decoder for the DBC tests: decodes frames with Debian's python3-canmatrix.

Usage: /usr/bin/python3 canmatrix-decode.py <file.dbc>  < frames.jsonl  > decoded.jsonl
Each input line: {"id": <int>, "ext": <bool>, "data": "<hex>"}.
Each output line: null (no message for the id), {"error": "..."}, or
{"msg": <name>, "signals": {<name>: [<physical value as float>, <label or null>, <physical value exactly>]}}
(canmatrix computes physical values with Python's Decimal: the third is its exact decimal text).
"""
import contextlib
import json
import math
import logging
import sys

logging.disable(logging.CRITICAL)  # canmatrix warns about lines it skips; the test compares values only

import canmatrix
import canmatrix.formats


def main():
    with contextlib.redirect_stdout(sys.stderr):  # canmatrix prints the lines it skips
        db = canmatrix.formats.loadp_flat(sys.argv[1])
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        aid = canmatrix.ArbitrationId(req["id"], extended=req["ext"])
        frame = db.frame_by_id(aid)
        if frame is None:
            out.write("null\n")
            continue
        try:
            decoded = frame.decode(bytes.fromhex(req["data"]))
        except Exception as e:  # a length mismatch and the like: reported, compared as such
            out.write(json.dumps({"error": str(e)}) + "\n")
            continue
        sigs = {}
        for name, d in decoded.items():
            named = d.named_value
            v = float(d.phys_value)
            # NaN and infinities (float signals) are not JSON: sent as the strings JavaScript's String() makes.
            if not math.isfinite(v):
                v = "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
            sigs[name] = [v, named if isinstance(named, str) else None, str(d.phys_value)]
        out.write(json.dumps({"msg": frame.name, "signals": sigs}) + "\n")


main()
