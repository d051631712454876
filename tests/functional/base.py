#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""Base class and helpers for functional tests.

Functional tests run as root inside the test bed VM (tools/testbed.py),
against the real kernel, libvirtd + QEMU and Open vSwitch. Outside the bed
they fail: they never skip, so a bed that did not come up cannot pass.
"""

import glob
import json
import logging
import os
import subprocess

import fixtures
import testtools
from testtools import content

# A record logged between tests (a worker thread that outlived one) is
# dropped rather than printed by logging's last-resort handler.
logging.getLogger().addHandler(logging.NullHandler())


def in_testbed() -> bool:
    return os.environ.get('NOVA_VDPA_TESTBED') == '1'


def modprobe(name: str) -> None:
    """Load ``name`` with the parameters the bed gave it at boot.

    tools/testbed.py's ``GUEST_MODULES`` (``vdpa_sim:use_va=0``): a test
    that unloads and loads modules again leaves the bed as it found it.
    """
    argv = [name]
    for spec in os.environ.get('NOVA_VDPA_TESTBED_MODULES', '').split(','):
        words = spec.split(':')
        if words[0] == name:
            argv = words
    subprocess.run(['modprobe'] + argv, check=True, timeout=300)


class BedTestCase(testtools.TestCase):
    """A test that needs the real kernel and the bed's services."""

    #: services (of tools/testbed.py --services) the test needs
    services: tuple[str, ...] = ()

    def setUp(self):
        super().setUp()
        if not in_testbed():
            self.fail('functional tests run only inside the test bed '
                      '(tox -e functional)')
        running = os.environ.get('NOVA_VDPA_TESTBED_SERVICES', '').split(',')
        missing = set(self.services) - set(running)
        if missing:
            self.fail('the bed was started without %s'
                      % ', '.join(sorted(missing)))
        self.addOnException(self._attach_service_logs)
        # Log records, the privsep daemon's included (oslo.privsep hands
        # them to this process), go to the test's details, not to the
        # bed's console: a passing run prints nothing to ignore.
        self.useFixture(fixtures.FakeLogger(level=logging.INFO))

    def _attach_service_logs(self, exc_info):
        """On failure, attach the tail of every service and QEMU log."""
        logs = os.environ.get('NOVA_VDPA_TESTBED_LOGS', '')
        paths = glob.glob(os.path.join(logs, '*.log'))
        paths += glob.glob('/var/log/libvirt/qemu/*.log')
        for path in sorted(paths):
            with open(path, errors='replace') as f:
                tail = ''.join(f.readlines()[-60:])
            self.addDetail('log:' + os.path.basename(path),
                           content.text_content(tail))

    def run_cmd(self, *argv: str, check: bool = True) -> str:
        """Run a command in the guest and return its stdout."""
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=120)
        if check and proc.returncode:
            self.fail('%s failed (%d): %s' % (' '.join(argv),
                                              proc.returncode,
                                              proc.stderr.strip()))
        return proc.stdout

    def vdpa_json(self, *args: str) -> dict:
        """iproute2's ``vdpa -j``: the reference client's view."""
        return json.loads(self.run_cmd('vdpa', '-j', *args) or '{}')


def privsep_daemon_pid(context=b'nova_vdpa.privsep.vdpa_pctxt'):
    """The newest live privsep daemon of ``context``, or None.

    Found by its command line, which the helper that forks it shares,
    as does a daemon of an earlier test that is still ending: the
    newest such process is the daemon the context talks to now. Used by
    tests/functional and tools/crash_safety_daemon.py.
    """
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                cmdline = f.read()
            with open('/proc/%s/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state, fields[19] the start time (stat's
        # 22nd field, in clock ticks since boot).
        if context in cmdline and fields[0] not in 'ZX':
            found.append((int(fields[19]), int(pid)))
    return max(found)[1] if found else None
