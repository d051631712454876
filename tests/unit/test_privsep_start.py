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

"""How the privsep daemon is started: the shipped filter and the wrapper.

The filter is loaded and matched by oslo.rootwrap's own code; the command
lines it sees are the ones oslo.privsep's ``helper_command`` builds. The
console script is the one the wheel installed next to this interpreter.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

from oslo_config import cfg
from oslo_rootwrap import wrapper

from nova_vdpa.cmd import privsep_helper
import nova_vdpa.privsep
from tests.unit import base

REPO = pathlib.Path(__file__).resolve().parents[2]
FILTERS = REPO / 'etc' / 'nova-vdpa' / 'rootwrap.d'
BIN = os.path.dirname(sys.executable)
HELPER = 'nova-vdpa-privsep-helper'
ROOTWRAP = 'sudo nova-rootwrap /etc/nova/rootwrap.conf'
CONTEXT = 'nova_vdpa.privsep.vdpa_pctxt'
SOCK = '/tmp/tmpab_c1234/privsep.sock'


def _bad_command_lines(good):
    """Command lines a compromised nova-compute could try instead."""
    ctx, sock = good[-3], good[-1]
    return {
        'dotdot socket': good[:-1] + ['/tmp/tmpab_c1234/../x/privsep.sock'],
        'dotdot dir': good[:-1] + ['/tmp/../tmp/tmpab_c1234/privsep.sock'],
        'relative socket': good[:-1] + [sock[1:]],
        'newline': good[:-1] + [sock + '\n'],
        'config file': good[:1] + ['--config-file',
                                   '/etc/nova/../../tmp/x.conf'] + good[1:],
        'config dir': good + ['--config-dir', '/tmp/x'],
        'extra argument': good + ['--debug'],
        'argument missing': good[:-2],
        'another context': good[:2] + ['nova.privsep.sys_admin_pctxt']
        + good[3:],
        'context prefix': good[:2] + [ctx + 'x'] + good[3:],
        'order': [good[0]] + good[3:] + good[1:3],
    }


class TestShippedRootwrapFilter(base.TestCase):

    def setUp(self):
        super().setUp()
        self.filters = wrapper.load_filters([str(FILTERS)])
        ctx = nova_vdpa.privsep.vdpa_pctxt
        cfg.CONF.set_override('helper_command', '%s %s' % (ROOTWRAP, HELPER),
                              group=ctx.cfg_section)
        self.addCleanup(cfg.CONF.clear_override, 'helper_command',
                        group=ctx.cfg_section)
        # What oslo.privsep runs: the sudo and rootwrap words, then the
        # command rootwrap matches against its filters.
        sockdir = tempfile.mkdtemp(dir='/tmp')
        self.addCleanup(os.rmdir, sockdir)
        command = ctx.helper_command(os.path.join(sockdir, 'privsep.sock'))
        self.assertEqual(ROOTWRAP.split(), command[:3])
        self.command = command[3:]

    def match(self, userargs):
        return wrapper.match_filter(self.filters, userargs, exec_dirs=[BIN])

    def test_the_command_oslo_privsep_sends_is_allowed(self):
        self.assertEqual([HELPER, '--privsep_context', CONTEXT,
                          '--privsep_sock_path'], self.command[:4])
        f = self.match(self.command)
        self.assertEqual(HELPER, f.name)
        self.assertEqual('root', f.run_as)
        self.assertEqual(os.path.join(BIN, HELPER),
                         f.get_command(self.command, [BIN])[0])

    def test_anything_else_is_refused(self):
        for what, userargs in _bad_command_lines(self.command).items():
            self.assertRaises(wrapper.NoFilterMatched, self.match, userargs)

    def test_rootwrap_always_admits_privsep_helper(self):
        # Why the daemon is not started as privsep-helper through
        # rootwrap: load_filters adds privsep-helper with any arguments
        # after every filter file, so a filter on it narrows nothing. Any
        # config file is accepted; the wrapper above chooses its own.
        f = self.match(['privsep-helper', '--config-file',
                        '/etc/nova/../../tmp/x.conf', '--privsep_context',
                        CONTEXT, '--privsep_sock_path', SOCK])
        self.assertEqual('privsep-helper', f.name)


class TestWrapper(base.TestCase):

    GOOD = [HELPER, '--privsep_context', CONTEXT, '--privsep_sock_path',
            SOCK]

    def test_fixed_command_line(self):
        self.assertEqual(
            ['privsep-helper', '--config-file', '/etc/nova/nova.conf',
             '--config-file', '/etc/nova/nova-compute.conf',
             '--privsep_context', CONTEXT, '--privsep_sock_path', SOCK],
            privsep_helper.daemon_argv(self.GOOD[1:], exists=lambda p: True))
        self.assertEqual(
            ['privsep-helper', '--config-file', '/etc/nova/nova.conf',
             '--privsep_context', CONTEXT, '--privsep_sock_path', SOCK],
            privsep_helper.daemon_argv(
                self.GOOD[1:], exists=lambda p: p == '/etc/nova/nova.conf'))
        e = self.assertRaises(privsep_helper.Refused,
                              privsep_helper.daemon_argv, self.GOOD[1:],
                              exists=lambda p: False)
        self.assertIn('/etc/nova/nova.conf is missing', str(e))

    def test_anything_else_is_refused(self):
        for what, argv in _bad_command_lines(self.GOOD).items():
            self.assertRaises(privsep_helper.Refused,
                              privsep_helper.daemon_argv, argv[1:],
                              exists=lambda p: True)

    def test_installed_command_refuses_before_starting_anything(self):
        # The console script the wheel installed, as sudo would run it.
        for argv in (['--config-file', '/tmp/x.conf'] + self.GOOD[1:],
                     self.GOOD[1:3] + ['--privsep_sock_path', 'x']):
            proc = subprocess.run([os.path.join(BIN, HELPER)] + argv,
                                  capture_output=True, text=True,
                                  cwd='/', timeout=120)
            self.assertEqual(2, proc.returncode, proc.stderr)
            self.assertIn('refused', proc.stderr)
            self.assertIn('helper_command', proc.stderr)
