"""The arm64 root's cache: built once, even when several processes ask for it at once."""

from __future__ import annotations

import threading
import time

from tvm_ext.rpc import arm64_root
from tvm_ext.rpc.arm64_root import COMPLETE_MARKER, Arm64Root


def test_processes_asking_at_once_build_the_root_once(tmp_path, monkeypatch):
    builds = []

    def slow_build(self, *, log):
        builds.append(self.path)
        time.sleep(0.3)  # long enough for every other caller to reach the lock
        self.path.mkdir(parents=True)
        (self.path / COMPLETE_MARKER).write_text("test\n")

    monkeypatch.setattr(arm64_root, "missing_tools", lambda tools=None: [])
    monkeypatch.setattr(Arm64Root, "_build", slow_build)
    root = Arm64Root(tmp_path / "cache" / "arm64-root", "0", "0")
    callers = [threading.Thread(target=root.ensure) for _ in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert builds == [root.path]
    assert root.complete
    root.ensure()  # cached: no build, no lock needed
    assert len(builds) == 1
