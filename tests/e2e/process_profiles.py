"""Board profiles for the end-to-end tests of process boards."""


def kill_model(profile, out_dir, reason):
    """A copy of `profile` in `out_dir` under the kill-only power model, with
    `reason` as the profile's written reason (the crash model's own tests are
    test_crash_storage.py's)."""
    text = profile.read_text()
    assert "device:\n  kind: process\n" in text, profile
    text = text.replace("device:\n  kind: process\n",
                        "device:\n  kind: process\n  power_loss: {model: kill, reason: \"%s\"}\n" % reason)
    out = out_dir / profile.name
    out.write_text(text)
    return out
