"""Read a wandb 0.31 offline run file (``run-*.wandb``) without wandb's old DataStore.

wandb 0.31 has no Python reader any more (wandb-core, in Go, writes the file);
the format is unchanged from the old ``wandb.sdk.internal.datastore``: a 7-byte
header (":W&B", magic 0xBEE1 little-endian, version 0), then 32 KiB blocks of
records, each with a 7-byte header (crc32c u32, length u16, type u8;
FULL=1 FIRST=2 MIDDLE=3 LAST=4). A record's payload is a serialized
``wandb_internal_pb2.Record``.
"""
import struct

BLOCK = 32768
HDR = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_payloads(path):
    with open(path, "rb") as f:
        data = f.read()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError(f"not a wandb run file: {ident!r} {magic:#x} {version}")
    pos = 7
    buf = None
    while pos + HDR <= len(data):
        left = BLOCK - (pos % BLOCK)
        if left < HDR:  # block trailer padding
            pos += left
            continue
        _crc, length, rtype = struct.unpack("<IHB", data[pos:pos + HDR])
        pos += HDR
        if rtype == 0 and length == 0:  # zero padding
            pos += BLOCK - (pos % BLOCK) if pos % BLOCK else 0
            continue
        chunk = data[pos:pos + length]
        pos += length
        if rtype == FULL:
            yield chunk
        elif rtype == FIRST:
            buf = bytearray(chunk)
        elif rtype == MIDDLE:
            buf += chunk
        elif rtype == LAST:
            buf += chunk
            yield bytes(buf)
            buf = None
        else:
            raise ValueError(f"bad record type {rtype} at {pos}")


def iter_records(path):
    from wandb.proto import wandb_internal_pb2 as pb
    for payload in iter_payloads(path):
        rec = pb.Record()
        rec.ParseFromString(payload)
        yield rec
