# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Shared base of the allocator's bed tests: a real privsep daemon.

The daemon (privsep-helper, CAP_NET_ADMIN only) reads the same
configuration file as the allocator; one daemon serves a whole class.
"""

import os
import pathlib
import sys
import tempfile

import fixtures
from oslo_config import cfg

from nova_vdpa import allocator
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
import nova_vdpa.privsep
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.functional import base

REPO = pathlib.Path(__file__).resolve().parents[2]
SIM_VF = '0000:00:05.1'
OP_VF = '0000:00:05.2'
OPERATOR_DEVICE = 'opvdpa0'
PORTS = ['7c0e3f5a-1d2b-4c3d-8e4f-5a6b7c8d9e%02x' % i for i in range(8)]
MAC = 'fa:16:3e:7a:00:%02x'


def write_config(path: str) -> cfg.ConfigOpts:
    """The file nova-compute and its privsep daemon would both read."""
    group = vdpa_conf.vdpa_group.name
    with open(path, 'w') as f:
        f.write('[%s]\nmanagement_devices = vdpasim_net\n'
                'simulated_vfs = %s=vdpasim_net,%s=vdpasim_net@%s\n'
                % (group, SIM_VF, OP_VF, OPERATOR_DEVICE))
    conf = cfg.ConfigOpts()
    vdpa_conf.register_opts(conf)
    conf(args=[], default_config_files=[path])
    return conf


class AllocatorBedTestCase(base.BedTestCase):
    """A real privsep daemon for the class; fresh allocators per test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not base.in_testbed():
            return  # setUp fails the tests with the reason
        cls.tmp = tempfile.TemporaryDirectory()
        path = os.path.join(cls.tmp.name, 'nova-vdpa.conf')
        cls.conf = write_config(path)
        ctx = nova_vdpa.privsep.vdpa_pctxt
        helper = os.path.join(os.path.dirname(sys.executable),
                              'privsep-helper')
        # The daemon imports the checkout under test and reads our file.
        cfg.CONF.set_override(
            'helper_command', 'env PYTHONPATH=%s %s --config-file %s'
            % (REPO, helper, path), group=ctx.cfg_section)
        cls.saved_conf = priv_vdpa._conf
        priv_vdpa._conf = cls.conf
        cls.client = netlink.VdpaClient()
        cls.sysfs = sysfs.VdpaSysfs()

    @classmethod
    def tearDownClass(cls):
        if base.in_testbed():
            ctx = nova_vdpa.privsep.vdpa_pctxt
            ctx.stop()
            cfg.CONF.clear_override('helper_command', group=ctx.cfg_section)
            priv_vdpa._conf = cls.saved_conf
            cls.client.close()
            cls.tmp.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        # The allocator's log (the test-only option's warning) goes with
        # the test's details, not to the console.
        self.useFixture(fixtures.FakeLogger(name='nova_vdpa'))
        self.addCleanup(self._delete_all)
        self.alloc = self.allocator()

    def allocator(self, **kwargs):
        alloc = allocator.Allocator.from_conf(self.conf, **kwargs)
        self.addCleanup(alloc.close)
        return alloc

    def _delete_all(self):
        for d in self.client.list_devices():
            try:
                self.client.delete_device(d.name)
            except exception.VdpaDeviceNotFound:
                pass

    def request(self, i, vf=SIM_VF, mac=None, **kwargs):
        return allocator.PortRequest(port_id=PORTS[i], vf_address=vf,
                                     mac=mac or MAC % i, **kwargs)

    def devices(self):
        """``vdpa -j dev show``: name -> management device."""
        return {n: d['mgmtdev'] for n, d in
                self.vdpa_json('dev', 'show').get('dev', {}).items()}

    def config(self, name):
        return self.vdpa_json('dev', 'config', 'show', name)['config'][name]

    def driver(self, name):
        return os.path.basename(
            os.readlink('/sys/bus/vdpa/devices/%s/driver' % name))

    def hold(self, chardev):
        """Open ``chardev`` as QEMU would; returns the closer."""
        fd = os.open(chardev, os.O_RDWR)
        closed = []

        def close():
            if not closed:
                closed.append(os.close(fd))
        self.addCleanup(close)
        return close
