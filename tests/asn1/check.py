#!/usr/bin/env python3
"""Independent check of fsed's DER: compiles formats/asn1/fsed.asn with
asn1tools, decodes every `<Type>--<name>.der` file of a directory as that
ASN.1 type, re-encodes it and requires the very same bytes.

Usage: check.py SPEC DIR
Exit status 0 when every file round-trips, 1 otherwise (each failure named).
"""
import pathlib
import sys

import asn1tools


def main() -> int:
    spec, directory = sys.argv[1], pathlib.Path(sys.argv[2])
    compiled = asn1tools.compile_files(spec, "der")
    files = sorted(directory.glob("*.der"))
    if not files:
        print(f"check.py: no .der file in {directory}")
        return 1
    failures = 0
    for path in files:
        type_name = path.name.split("--", 1)[0]
        data = path.read_bytes()
        try:
            value = compiled.decode(type_name, data)
            again = compiled.encode(type_name, value)
        except Exception as e:  # noqa: BLE001 - report any decoder error per file
            print(f"FAIL {path.name}: {type(e).__name__}: {e}")
            failures += 1
            continue
        if again != data:
            print(f"FAIL {path.name}: re-encoded {len(again)} bytes differ from the {len(data)} read")
            failures += 1
        else:
            print(f"ok   {path.name} ({type_name}, {len(data)} bytes)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
