#!/usr/bin/env python3
"""Packs an evidence bundle into one fuzz input for fuzz_bundle_verify:
NAME NUL LENGTH(4 bytes, little endian) CONTENT, for every file.
    pack_bundle.py BUNDLE_DIR OUT_FILE"""
import struct
import sys
from pathlib import Path

bundle, out = Path(sys.argv[1]), Path(sys.argv[2])
with out.open("wb") as f:
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        data = path.read_bytes()
        f.write(str(path.relative_to(bundle)).encode() + b"\0" + struct.pack("<I", len(data)) + data)
