"""The support-period scenarios on the real-client boards (docs/ota-clients.md,
"Over the support period").

`otarig run` on boards/swupdate-ab.yaml and boards/rauc-ab.yaml, judged by
the policy each profile declares from what its client does:
- signer-expired / signer-not-yet-valid: the release in a package signed now
  by a signer certificate the board's CA issued, valid 2001..2002 or
  2200..2300; SWUpdate and RAUC refuse it by the device clock (exit 0, the
  delivery refused naming the certificate), and the clean retry installs.
- clock-1970: under libfaketime the client refuses the validly signed
  release (its signer and CA are not yet valid by that clock); the clock is
  put right for the recovery boot and the retry installs.
- clock-skew: a backward skew of more than a day (seed 2: about -21 days),
  which the signer's old validity (from a day ago) did not cover, installs.
- A profile that claims more than the client does (clock_1970: recovers) is
  caught by still-updatable (exit 1) with SWUpdate's own refusal.

Needs root (private mount namespaces), swupdate, rauc, dbus-run-session,
mksquashfs, fw_setenv and libfaketime; skips with the reason otherwise.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_clients_e2e import OTARIG, SOURCE, need_rauc, need_swupdate, trials  # noqa: E402

LIBFAKETIME = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
               "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"]

BOARDS = {
    "swupdate": ("boards/swupdate-ab.yaml", need_swupdate,
                 # SWUpdate's CMS check of the signer (corelib/swupdate_cms_verify.c)
                 {"signer-expired": "verify_signer_certs", "signer-not-yet-valid": "verify_signer_certs",
                  "clock-1970": "verify_signer_certs"}),
    "rauc": ("boards/rauc-ab.yaml", need_rauc,
             {"signer-expired": "certificate has expired", "signer-not-yet-valid": "certificate is not yet valid",
              "clock-1970": "certificate is not yet valid"}),
}


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


@pytest.mark.parametrize("client", sorted(BOARDS))
@pytest.mark.parametrize("scenario", ["signer-expired", "signer-not-yet-valid"])
def test_a_signer_outside_its_validity_is_refused(client, scenario, tmp_path):
    board, need, refusal = BOARDS[client]
    need()
    r, t = one_trial(board, scenario, tmp_path / "o")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "signer_expiry: enforced, so it must be refused" in t["fault"]["detail"], t["fault"]
    window = "2001-01-01T00:00:00Z .. 2002-01-01T00:00:00Z" if scenario == "signer-expired" else \
        "2200-01-01T00:00:00Z .. 2300-01-01T00:00:00Z"
    assert window in t["fault"]["detail"], t["fault"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    console = (tmp_path / "o" / "trials" / t["id"] / "console.log").read_text(errors="replace")
    assert refusal[scenario] in console, console[-3000:]
    assert not t["broken"], t["broken"]


@pytest.mark.parametrize("client", sorted(BOARDS))
def test_at_1970_the_client_refuses_until_its_clock_is_right(client, tmp_path):
    board, need, refusal = BOARDS[client]
    need()
    need_faketime()
    r, t = one_trial(board, "clock-1970", tmp_path / "o")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "clock_1970: refuses-updates" in t["fault"]["detail"], t["fault"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    console = (tmp_path / "o" / "trials" / t["id"] / "console.log").read_text(errors="replace")
    assert refusal["clock-1970"] in console, console[-3000:]


@pytest.mark.parametrize("client", sorted(BOARDS))
def test_a_clock_weeks_behind_still_installs(client, tmp_path):
    board, need, _ = BOARDS[client]
    need()
    need_faketime()
    r, t = one_trial(board, "clock-skew", tmp_path / "o", seed=SKEW_BEHIND_SEED)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert t["fault"]["seconds"] < -7 * 86400, t["fault"]
    assert "clock_skew: recovers" in t["fault"]["detail"], t["fault"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]


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
    assert "verify_signer_certs" in t["broken"][0]["detail"] or "Authentication" in t["broken"][0]["detail"], t["broken"]
