"""The support-period scenarios on the real-client boards (docs/ota-clients.md,
"Over the support period"), judged by the policy each profile declares from
what its client was measured to do:
- signer-expired / signer-not-yet-valid (swupdate-ab, rauc-ab): the release
  in a package signed now by a signer certificate the board's CA issued,
  valid 2001..2002 or 2200..2300; SWUpdate and RAUC refuse it by the device
  clock (exit 0, the client's own refusal on the console).
- clock-1970 (swupdate-ab, swupdate-ab-suricatta, rauc-ab, mender-ab,
  mender-ab-managed):
  under libfaketime each client refuses the validly signed release by its
  own check (the signer, or the server's certificate, not yet valid); the
  clock is put right for the recovery boot and the retry installs.
- clock-skew, seed 3 (about 25 days behind), which a signer or server
  certificate valid only from a day ago would not cover: installs.
- outage (swupdate-ab-suricatta): suricatta polls on through handshakes the
  absent server reset (libcurl 35) and installs the release.
- rauc-ab-signing-time (use-bundle-signing-time) installs at 1970 and
  still refuses a signer that had expired when the bundle was signed.
- A profile that claims more than SWUpdate does (clock_1970: recovers) is
  caught by still-updatable (exit 1) naming SWUpdate's refusal.

Needs root (private mount namespaces), swupdate, rauc, mender and their
tools, and libfaketime; skips with the reason otherwise.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_clients_e2e import OTARIG, SOURCE, need_rauc, need_swupdate, trials  # noqa: E402
from test_mender_e2e import need_mender  # noqa: E402

LIBFAKETIME = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
               "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"]

def need_suricatta():
    need_swupdate()


BOARDS = {
    "swupdate": ("boards/swupdate-ab.yaml", need_swupdate),
    "swupdate-suricatta": ("boards/swupdate-ab-suricatta.yaml", need_suricatta),
    "rauc": ("boards/rauc-ab.yaml", need_rauc),
    "mender": ("boards/mender-ab.yaml", need_mender),
    "mender-managed": ("boards/mender-ab-managed.yaml", need_mender),
}
# What each client says when it refuses, by scenario.
REFUSAL = {
    # SWUpdate's CMS check of the signer (corelib/swupdate_cms_verify.c).
    ("swupdate", "signer-expired"): "Authentication of all signatures failed",
    ("swupdate", "signer-not-yet-valid"): "Authentication of all signatures failed",
    ("swupdate", "clock-1970"): "Authentication of all signatures failed",
    # suricatta's libcurl (strictssl, the rig's CA): the server certificate is not yet valid.
    ("swupdate-suricatta", "clock-1970"): "Channel get operation failed (60)",
    ("rauc", "signer-expired"): "certificate has expired",
    ("rauc", "signer-not-yet-valid"): "certificate is not yet valid",
    ("rauc", "clock-1970"): "certificate is not yet valid",
    # Mender's OpenSSL (through cgo): X509_V_ERR_CERT_NOT_YET_VALID.
    ("mender", "clock-1970"): "openssl verify rc: 9",
    # The daemon's authentication request (OpenSSL through cgo: its check of
    # the server certificate sees the faked clock).
    ("mender-managed", "clock-1970"): "openssl verify rc: 9",
}
# clock-skew with this seed sets the clock about 25.5 days behind (test_lifecycle checks the draw).
SKEW_BEHIND_SEED = 3


def need_faketime():
    if not any(Path(p).exists() for p in LIBFAKETIME):
        pytest.skip("libfaketime is not installed (Debian package libfaketime; ci/setup installs it)")


def run_seed(board, scenario, out, seed):
    shutil.rmtree(out, ignore_errors=True)
    return subprocess.run([OTARIG, "run", "--board", str(SOURCE / board), "--scenario", scenario, "--seed", str(seed),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=600)


def one_trial(board, scenario, out, seed=1):
    r = run_seed(board, scenario, out, seed)
    assert (Path(out) / "run.json").exists(), r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = trials(out)["trials"]
    return r, t


@pytest.mark.parametrize("client", ["swupdate", "rauc"])
@pytest.mark.parametrize("scenario", ["signer-expired", "signer-not-yet-valid"])
def test_a_signer_outside_its_validity_is_refused(client, scenario, tmp_path):
    board, need = BOARDS[client]
    need()
    r, t = one_trial(board, scenario, tmp_path / "o")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "signer_expiry: enforced, so it must be refused" in t["fault"]["detail"], t["fault"]
    window = "2001-01-01T00:00:00Z .. 2002-01-01T00:00:00Z" if scenario == "signer-expired" else \
        "2200-01-01T00:00:00Z .. 2300-01-01T00:00:00Z"
    assert window in t["fault"]["detail"], t["fault"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    console = (tmp_path / "o" / "trials" / t["id"] / "console.log").read_text(errors="replace")
    assert REFUSAL[client, scenario] in console, console[-3000:]
    assert not t["broken"], t["broken"]


@pytest.mark.parametrize("client", sorted(BOARDS))
def test_at_1970_the_client_refuses_until_its_clock_is_right(client, tmp_path):
    board, need = BOARDS[client]
    need()
    need_faketime()
    r, t = one_trial(board, "clock-1970", tmp_path / "o")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "clock_1970: refuses-updates" in t["fault"]["detail"], t["fault"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    console = (tmp_path / "o" / "trials" / t["id"] / "console.log").read_text(errors="replace")
    # Refused by the client's own check, not by a device that could not start under libfaketime.
    assert REFUSAL[client, "clock-1970"] in console and "libfaketime:" not in console, console[-3000:]


@pytest.mark.parametrize("client", ["swupdate", "rauc", "mender", "mender-managed"])
def test_a_clock_weeks_behind_still_installs(client, tmp_path):
    board, need = BOARDS[client]
    need()
    need_faketime()
    r, t = one_trial(board, "clock-skew", tmp_path / "o", seed=SKEW_BEHIND_SEED)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert t["fault"]["seconds"] < -7 * 86400, t["fault"]
    assert "clock_skew: recovers" in t["fault"]["detail"], t["fault"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]


def test_rauc_judging_the_signer_at_the_signing_time_installs_at_1970(tmp_path):
    # rauc-ab-signing-time: [keyring] use-bundle-signing-time=true. The same
    # RAUC that refuses every bundle at 1970 on rauc-ab installs here, and
    # still refuses a signer that had expired when the bundle was signed.
    need_rauc()
    need_faketime()
    board = "boards/rauc-ab-signing-time.yaml"
    r, t = one_trial(board, "clock-1970", tmp_path / "clock")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "clock_1970: recovers" in t["fault"]["detail"], t["fault"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]
    r, t = one_trial(board, "signer-expired", tmp_path / "signer")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "signer_expiry: signing-time, so it must be refused" in t["fault"]["detail"], t["fault"]
    assert t["delivery"]["status"] == "refused" and "certificate has expired" in t["delivery"]["detail"], t["delivery"]


def test_suricatta_polls_on_through_an_outage(tmp_path):
    # The server away for a seeded 2-5 s, refusing (connections reset during
    # the handshake: libcurl 35) or dropping; suricatta polls on and installs
    # the release published meanwhile within the interval its profile declares.
    need_suricatta()
    out = tmp_path / "o"
    r = run_seed(BOARDS["swupdate-suricatta"][0], "outage", out, 1)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = trials(out)
    assert sorted(t["fault"]["variant"] for t in doc["trials"]) == ["drop", "refuse"], doc["trials"]
    for t in doc["trials"]:
        assert t["delivery"]["status"] == "accepted" and not t["broken"], (t["delivery"], t["broken"])
        if t["fault"]["variant"] == "refuse":
            console = (out / "trials" / t["id"] / "console.log").read_text(errors="replace")
            assert "Channel get operation failed (35)" in console, console[-3000:]


def test_a_profile_claiming_more_than_swupdate_does_is_caught(tmp_path):
    need_swupdate()
    need_faketime()
    text = (SOURCE / "boards/swupdate-ab.yaml").read_text()
    assert "    clock_1970: refuses-updates\n" in text
    claim = tmp_path / "swupdate-ab-claims-1970.yaml"
    claim.write_text(text.replace("name: swupdate-ab\n", "name: swupdate-ab-claims-1970\n")
                     .replace("    clock_1970: refuses-updates\n", "    clock_1970: recovers\n"))
    out = tmp_path / "o"
    r = run_seed(claim, "clock-1970", out, 1)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = trials(out)["trials"]
    assert [b["oracle"] for b in t["broken"]] == ["still-updatable"], t["broken"]
    assert "Authentication of all signatures failed" in t["broken"][0]["detail"], t["broken"]
