"""SWUpdate's delta handler (Debian's swupdate 2022.12, linked against libzck)
against the rig's update server (`otarig serve`): the .swu carries the
zchunk header of the new slot image and a signed sw-description whose
`delta` image names the running slot as `source`, the server's .zck as
`url` and `rawfile` as `chain`; SWUpdate fetches the chunks the source lacks
in one multi-range request, which the server answers with 206
multipart/byteranges (docs/network.md), and assembles the new image.

A chunk corrupted on the server, a server that answers ranges wrongly
(`otarig serve --wrong-ranges`) and a source that is another image are
judged too. Each test runs one `swupdate -i` with its own TMPDIR (its sockets) and one
`otarig serve`; a second or two. Skips, saying what is missing, without
swupdate, zck, zck_read_header or openssl."""
import hashlib
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

BIN = os.environ.get("OTARIG_BIN", "otarig")
TOOLS = ["swupdate", "zck", "zck_read_header", "openssl"]
SIZE = 256 * 1024


def missing():
    return [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]


pytestmark = pytest.mark.skipif(bool(missing()), reason="not installed: %s (ci/setup with "
                                "OTARIG_SETUP_EXTRA=clients: swupdate, zchunk, openssl)" % ", ".join(missing()))


def newc(entries):
    """A cpio newc archive (what SWUpdate reads) of (name, bytes), then the trailer."""
    out = bytearray()
    for ino, (name, data) in enumerate(entries + [("TRAILER!!!", b"")], start=1):
        n = name.encode() + b"\0"
        fields = [ino if data or name != "TRAILER!!!" else 0, 0o100644 if name != "TRAILER!!!" else 0, 0, 0, 1, 0,
                  len(data), 0, 0, 0, 0, len(n), 0]
        out += b"070701" + b"".join(b"%08x" % f for f in fields) + n
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    out += b"\0" * (-len(out) % 512)
    return bytes(out)


class Rig:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        rnd = random.Random(7)
        self.base = bytes(rnd.getrandbits(8) for _ in range(SIZE))
        target = bytearray(self.base)
        for at in (20000, 150000):  # two edited places, 4 KiB each
            target[at:at + 4096] = bytes(rnd.getrandbits(8) for _ in range(4096))
        self.target = bytes(target)
        (tmp / "slota").write_bytes(self.base)
        (tmp / "slotb").write_bytes(b"\xff" * SIZE)
        (tmp / "target.raw").write_bytes(self.target)
        subprocess.run(["zck", "-u", "-h", "sha256", "-o", tmp / "target.raw.zck", tmp / "target.raw"], check=True,
                       capture_output=True)
        info = subprocess.run(["zck_read_header", "-v", tmp / "target.raw.zck"], check=True, capture_output=True,
                              text=True).stdout
        self.header_size = int(next(l for l in info.splitlines() if l.startswith("Header size")).split(":")[1])
        self.zck = (tmp / "target.raw.zck").read_bytes()
        # The rig's test PKI for packages: a CA and a signer (otarig image build --format swu writes one).
        subprocess.run([BIN, "image", "build", "--version", "1.0.0", "--counter", "1", "--payload-size", "1000", "--key",
                        "test:k", "--format", "swu", "--signer", tmp / "pki", "--out", tmp / "unused.swu"],
                       check=True, capture_output=True)
        (tmp / "srv").mkdir()
        (tmp / "tmp").mkdir()

    def serve(self, zck: bytes, *extra):
        (self.tmp / "srv" / "target.raw.zck").write_bytes(zck)
        self.server = subprocess.Popen([BIN, "serve", "--root", self.tmp / "srv", "--port", "0", *extra],
                                       stdout=subprocess.PIPE, text=True)
        line = self.server.stdout.readline()
        assert line.startswith("listening on "), line
        return line.split()[-1]

    def requests(self):
        self.server.terminate()
        out, _ = self.server.communicate(timeout=10)
        return [json.loads(l) for l in out.splitlines() if l.startswith("{")]

    def swupdate(self, url: str, source: str = "slota"):
        header = self.zck[:self.header_size]
        desc = f"""software =
{{
  version = "1.1.0";
  hardware-compatibility = ["1.0"];
  images: (
    {{
      filename = "target.header";
      type = "delta";
      path = "{self.tmp / 'slotb'}";
      sha256 = "{hashlib.sha256(header).hexdigest()}";
      properties: {{
        url = "{url}/target.raw.zck";
        chain = "rawfile";
        source = "{self.tmp / source}";
        max-ranges = "150";
        zckloglevel = "info";
      }};
    }}
  );
}}
""".encode()
        (self.tmp / "sw-description").write_bytes(desc)
        subprocess.run(["openssl", "cms", "-sign", "-in", self.tmp / "sw-description", "-out",
                        self.tmp / "sw-description.sig", "-signer", self.tmp / "pki/signer.pem", "-inkey",
                        self.tmp / "pki/signer.key", "-outform", "DER", "-nosmimecap", "-binary"], check=True,
                       capture_output=True)
        swu = newc([("sw-description", desc), ("sw-description.sig", (self.tmp / "sw-description.sig").read_bytes()),
                    ("target.header", header)])
        (self.tmp / "delta.swu").write_bytes(swu)
        env = dict(os.environ, TMPDIR=str(self.tmp / "tmp"))
        return subprocess.run(["swupdate", "-v", "-i", self.tmp / "delta.swu", "-k", self.tmp / "pki/ca.pem", "-H",
                               "otarig:1.0"], capture_output=True, text=True, env=env, timeout=120)

    def slotb(self):
        return (self.tmp / "slotb").read_bytes()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    if getattr(r, "server", None) and r.server.poll() is None:
        r.server.kill()
        r.server.wait()


def test_swupdate_assembles_the_new_slot_from_the_running_one_and_the_chunks_it_fetches_in_one_multipart_answer(rig):
    p = rig.swupdate(rig.serve(rig.zck))
    assert installed(p), p.stdout[-3000:] + p.stderr[-2000:]
    assert rig.slotb() == rig.target
    reqs = rig.requests()
    ranged = [r for r in reqs if r["range"]]
    assert ranged and all(r["status"] == 206 for r in ranged), reqs
    assert any("multipart/byteranges" in r["note"] for r in ranged), reqs
    # Only the chunks the running slot lacks crossed the network; the rest was reused.
    assert sum(r["bytes"] for r in reqs) < len(rig.zck) - rig.header_size, reqs
    reused = [l for l in p.stdout.splitlines() if "Total bytes to be reused" in l]
    assert reused and int(reused[0].split(":")[-1]) > 0, reused


def test_a_corrupted_chunk_is_refused_by_its_checksum(rig):
    zck = bytearray(rig.zck)
    # A byte of the data section in the first edited 4 KiB (its chunks are fetched, not reused).
    at = rig.header_size + 20000 + 2048
    zck[at] ^= 0x40
    p = rig.swupdate(rig.serve(bytes(zck)))
    assert p.returncode != 0, p.stdout[-3000:]
    assert rig.slotb() != rig.target
    rig.requests()


def installed(p) -> bool:
    # swupdate -i has been seen to exit 1 after it logged the update's end as
    # successful (under load); its own end-of-update line is its verdict, and
    # the tests compare the slot with the target byte for byte besides.
    return p.returncode == 0 or "[endupdate] : SWUpdate was successful" in p.stdout


def test_another_base_falls_back_to_fetching_what_it_lacks(rig):
    # The source is not the image the delta was made for: nothing matches, so
    # SWUpdate fetches every chunk and still assembles the new image (the
    # board's `delta: {wrong_base: full-image}`).
    (rig.tmp / "other").write_bytes(bytes(random.Random(9).getrandbits(8) for _ in range(SIZE)))
    p = rig.swupdate(rig.serve(rig.zck), source="other")
    assert installed(p), p.stdout[-3000:]
    assert rig.slotb() == rig.target
    reqs = rig.requests()
    assert sum(r["bytes"] for r in reqs) >= len(rig.zck) - rig.header_size, reqs


def test_a_server_that_answers_ranges_wrongly_is_refused(rig):
    # Every part of the multipart answer carries the bytes one past the range
    # its Content-Range names (otarig serve --wrong-ranges): the chunks fail
    # their checksums and the install fails.
    p = rig.swupdate(rig.serve(rig.zck, "--wrong-ranges", "/target.raw.zck"))
    assert p.returncode != 0, p.stdout[-3000:]
    assert rig.slotb() != rig.target
    reqs = rig.requests()
    assert any("wrong ranges" in r["note"] for r in reqs), reqs
