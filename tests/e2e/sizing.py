"""How large the end-to-end tests' campaigns are.

Under the sanitizers (the `asan` preset sets OTARIG_SANITIZED=1 for every
test, tests/CMakeLists.txt) the rig and its devices run several times slower.
There the tests run the same scenarios, through the same code paths, on
seeded samples of their plans (`--trials N` on a suite keeps at least one
trial of each scenario), and what they assert of a whole plan they assert of
the sample."""
import os

SANITIZED = os.environ.get("OTARIG_SANITIZED") == "1"


def sample(normal, sanitized):
    """`--trials` arguments: `normal` trials (None: the whole plan), or
    `sanitized` under the sanitizers."""
    n = sanitized if SANITIZED else normal
    return [] if n is None else ["--trials", n]
