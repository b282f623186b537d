"""Is a PNG screenshot non-blank? `python3 packaging/check_png.py SHOT.png [--min-size WxH]`.

Pure standard library (zlib), so any Python 3 can check the bundle's output: decodes 8-bit RGB/RGBA
PNGs (what Qt writes), prints size, number of distinct colours and the share of pixels that differ from
the most common colour, and exits 1 when the image looks blank (one flat colour, or nearly).
"""

from __future__ import annotations

import argparse
import struct
import sys
import zlib
from collections import Counter


def read_png(path: str) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, raw unfiltered pixel bytes) of an 8-bit RGB/RGBA/grey PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = ihdr
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or bpp is None or interlace:
        raise ValueError(f"{path}: unsupported PNG (bit depth {depth}, colour type {colour}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ftype == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return width, height, bpp, bytes(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("png")
    ap.add_argument("--min-size", default="640x480", help="smallest acceptable WxH")
    ap.add_argument("--min-colours", type=int, default=64)
    ap.add_argument("--min-varied", type=float, default=0.05,
                    help="smallest share of pixels that differ from the most common colour")
    args = ap.parse_args(argv)
    try:
        w, h, bpp, px = read_png(args.png)
    except (OSError, ValueError, zlib.error, TypeError, struct.error) as exc:
        print(f"check_png: {args.png}: {exc}", file=sys.stderr)
        return 1
    colours = Counter(px[i:i + 3] for i in range(0, len(px), bpp * 3))  # every third pixel
    n = sum(colours.values())
    varied = 1 - colours.most_common(1)[0][1] / n
    mw, _, mh = args.min_size.partition("x")
    ok = w >= int(mw) and h >= int(mh) and len(colours) >= args.min_colours and varied >= args.min_varied
    print(f"check_png: {args.png}: {w}x{h}, {len(colours)} colours, {varied:.1%} of pixels differ from the "
          f"most common colour: {'ok' if ok else 'BLANK or too small'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
