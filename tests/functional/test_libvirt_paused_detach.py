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

"""Detach of a vdpa interface from a *paused* guest, per QEMU version.

The designer's docstring records that QEMU 7.2 keeps the chardev of an
interface detached from a paused guest open until the domain is destroyed
(its fdset cleanup skips a VM that is not running), and
:func:`nova_vdpa.libvirt.designer.paused_detach_releases` says, by version,
whether a detached device is free again while the guest stays paused. This
file shows it on the bed's QEMU, whichever userspace the bed runs.
"""

import time

from nova_vdpa.libvirt import designer
from tests.functional import test_libvirt_vdpa as lvt


class TestPausedDetach(lvt.LibvirtVdpaBase):

    DEVICES = {'lvt12': '02:00:00:00:01:0d', 'lvt13': '02:00:00:00:01:0e'}

    @classmethod
    def prepare(cls):
        boot = lvt.render(designer.Port(mac='02:00:00:00:01:0d'),
                          cls.facts['lvt12'], cls.host, vcpus=2)
        guest = lvt.guest_config(lvt.DOMAIN + '-paused', [boot],
                                 spare_ports=1)
        cls.dom = cls.conn.defineXML(guest.to_xml())
        cls.dom.createWithFlags(cls.libvirt.VIR_DOMAIN_START_PAUSED)
        cls.pid = int(open('/run/libvirt/qemu/%s.pid'
                           % cls.dom.name()).read())

    def test_detach_from_paused_guest(self):
        live = self.libvirt.VIR_DOMAIN_AFFECT_LIVE
        chardev = self.chardevs['lvt13']
        conf = self.design('lvt13', '02:00:00:00:01:0e')
        self.dom.attachDeviceFlags(conf.to_xml(), live)
        self.assertIn(chardev, lvt.held_by(self.pid))
        self.dom.detachDeviceFlags(conf.to_xml(), live)
        self.assertEqual(self.libvirt.VIR_DOMAIN_PAUSED,
                         self.dom.state()[0])
        self.assertNotIn('02:00:00:00:01:0e',
                         lvt.reported_interfaces(self.dom))
        deadline = time.monotonic() + 10
        while (chardev in lvt.held_by(self.pid)
               and time.monotonic() < deadline):
            time.sleep(0.2)
        released = chardev not in lvt.held_by(self.pid)
        self.assertEqual(designer.paused_detach_releases(self.host),
                         released, 'QEMU %s' % designer.version_str(
                             self.host.qemu_version))
        self.assertEqual(released, lvt.opens_exclusively(chardev))
        # Either way the device is free once the guest has gone.
        self.dom.destroy()
        self.assertTrue(lvt.opens_exclusively(chardev))
