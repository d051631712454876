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

"""What every nova-functional test of LibvirtVdpaDriver sets up.

:class:`VdpaDriverMixin` goes before upstream's ``VDPAServersTest`` (or a
class derived from it): LibvirtVdpaDriver as the compute driver, a fake
kernel per compute host (``tests.unit.compute.kernels``) whose VFs have an
mlx5-like management device, upstream's fake libvirt host (hot-plugged vdpa
interfaces kept as libvirt keeps them: :mod:`.fake_libvirt`) with its vdpa
node devices left out (on demand) or mirrored by operator devices
(``PRECREATED``), and upstream's port with a unicast MAC. After each test
it checks that the kernel holds no device of ours whose MAC no guest on
that host uses. tests/nova_functional/test_vdpa_servers.py says why each
adaptation is needed.
"""

from unittest import mock

from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_config import cfg

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import driver as vdpa_driver
from nova_vdpa import conf as vdpa_conf
from tests.nova_functional import fake_libvirt
from tests.unit.compute import kernels
from tests.unit import fake_kernel

CONF = cfg.CONF

#: upstream's b5:... with the multicast (I/G) bit cleared
UNICAST_MAC = 'b4:bc:2e:e7:51:ee'
#: the VFs upstream's start_vdpa_compute makes: 0000:06:00.1 - .4
VF_ADDRESSES = ['0000:06:00.%d' % f for f in range(1, 5)]


class VdpaDriverMixin:
    """Upstream's vdpa test class on LibvirtVdpaDriver over fake kernels."""

    PRECREATED = False

    def setUp(self):
        self.kernels = self.useFixture(kernels.FakeHostKernels(
            default=lambda: [fake_kernel.mlx5_vf(a) for a in VF_ADDRESSES]))
        super().setUp()
        #: hot-plugged vdpa interfaces as libvirt has them; the detaches
        self.vdpa_libvirt = self.useFixture(fake_libvirt.VdpaInterfaces())
        self.addCleanup(self._check_kernels)

    def _setup_compute_service(self):
        self.flags(compute_driver='nova_vdpa.LibvirtVdpaDriver')
        vdpa_conf.register_opts(CONF)
        self.flags(offload_checks=False, group=vdpa_driver.option_group())
        # An empty list allows none: the VFs of every fake host.
        self.flags(management_devices=['pci/' + a for a in VF_ADDRESSES],
                   group=vdpa_driver.option_group())

    def start_vdpa_compute(self, hostname='compute-0'):
        made = []
        real_add = fakelibvirt.HostVDPADevicesInfo.add_device

        def add_device(info, name, idx, parent):
            made.append((idx, parent))
            if self.PRECREATED:
                return real_add(info, name, idx, parent)

        with mock.patch.object(fakelibvirt.HostVDPADevicesInfo,
                               'add_device', add_device):
            hostname = super().start_vdpa_compute(hostname=hostname)
        if self.PRECREATED:
            self._make_operator_devices(hostname, made)
        return hostname

    def create_vdpa_port(self):
        real_create = self.neutron.create_port

        def create_port(body):
            body['port']['mac_address'] = UNICAST_MAC
            return real_create(body)

        with mock.patch.object(self.neutron, 'create_port', create_port):
            return super().create_vdpa_port()

    def _make_operator_devices(self, hostname, made):
        kernel = self.kernels.kernel(hostname)
        client = kernel.client()
        self.addCleanup(client.close)
        for idx, parent in made:
            address = '0000:%02x:%02x.%d' % (parent.bus, parent.slot,
                                             parent.function)
            name = 'vdpa%d' % idx
            if name not in kernel.devices:  # a restarted compute
                client.create_device(name, 'pci/' + address)
                kernel.sysfs().bind(name)

    def _check_kernels(self):
        # By MAC: an operator's adopted device has its own, the port's
        # is the guest's.
        for host, kernel in self.kernels.kernels.items():
            macs = set()
            compute = getattr(self, 'computes', {}).get(host)
            if compute is not None:
                conn = compute.driver._host.get_connection()
                for dom in conn._vms.values():
                    macs.update(nic.get('mac')
                                for nic in dom._def['devices']['nics'])
            for name, dev in kernel.devices.items():
                if vdpa_allocator.is_ours(name):
                    self.assertIn(dev.mac, macs,
                                  '%s: %s left behind' % (host, name))
            if self.PRECREATED:
                self.assertEqual(
                    {'vdpa%d' % i for i in range(len(VF_ADDRESSES))},
                    {n for n in kernel.devices
                     if not vdpa_allocator.is_ours(n)}, host)
