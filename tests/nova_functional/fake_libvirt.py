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

"""Nova's fake libvirt, with hot-plugged vdpa interfaces as libvirt has them.

Nova 34.0.0's ``nova.tests.fixtures.libvirt`` keeps ``<source dev>`` for
a vdpa interface defined at boot, but its ``attachDevice`` parses a
hot-plugged interface with ``_parse_nic_info``, which reads only a bridge
source: the live XML then shows ``<source dev='None'/>``. Nova's
``detach_interface`` finds the interface to detach by type, MAC and
source (``Guest.get_interface_by_cfg``), never finds that one, and treats
"not found" as a finished detach: a detach test on the stock fake passes
without the detach path running. Its ``detachDevice`` also answers a
detach of an interface the domain does not have with success.

:class:`VdpaInterfaces` patches only that behaviour, as libvirt has it:

* a hot-plugged ``<interface type='vdpa'>`` keeps its ``source dev``;
* detaching a vdpa interface the domain's definition does not have (no
  interface of type vdpa with that MAC, libvirt's match) fails with
  ``VIR_ERR_DEVICE_MISSING``. The fake keeps one definition for the
  persistent and the live domain, so Nova's live detach, which follows
  its persistent one, finds it gone already: only a persistent
  (``AFFECT_CONFIG``) detach is checked;
* a live detach that removed the interface sends
  ``VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED`` with its alias, as libvirt does
  once QEMU let go of the device; Nova waits for it.
"""

import fixtures
from lxml import etree
from nova.tests.fixtures import libvirt as fakelibvirt

_MODULE = 'nova.tests.fixtures.libvirt'


def _vdpa_nics(dom, mac):
    return [nic for nic in dom._def['devices']['nics']
            if nic.get('type') == 'vdpa' and nic.get('mac') == mac]


class VdpaInterfaces(fixtures.Fixture):
    """Hot-plugged vdpa interfaces keep their source; detaches are checked.

    :ivar detached: ``(domain name, MAC, source dev)`` of every vdpa
        interface a detach removed, in order.
    """

    def _setUp(self):
        self.detached = []
        real_parse = fakelibvirt._parse_nic_info
        real_detach = fakelibvirt.Domain.detachDeviceFlags
        # (domain UUID, MAC) -> alias of an interface whose live detach
        # is still to come
        aliases = {}

        def parse_nic_info(element):
            info = real_parse(element)
            source = element.find('./source')
            if info.get('type') == 'vdpa' and source is not None:
                info['source'] = source.get('dev')
            return info

        def detach_device_flags(dom, xml, flags):
            elem = etree.fromstring(xml)
            if elem.tag != 'interface' or elem.get('type') != 'vdpa':
                return real_detach(dom, xml, flags)
            mac = elem.find('./mac').get('address')
            before = _vdpa_nics(dom, mac)
            if not before and flags & fakelibvirt.VIR_DOMAIN_AFFECT_CONFIG:
                raise fakelibvirt.make_libvirtError(
                    fakelibvirt.libvirtError,
                    'operation failed: no device matching MAC address %s '
                    'found' % mac,
                    error_code=fakelibvirt.VIR_ERR_DEVICE_MISSING,
                    error_domain=fakelibvirt.VIR_FROM_DOMAIN)
            real_detach(dom, xml, flags)
            key = (dom.UUIDString(), mac)
            for nic in before:
                self.detached.append((dom.name(), mac, nic.get('source')))
                aliases[key] = nic.get('alias')
            if (flags & fakelibvirt.VIR_DOMAIN_AFFECT_LIVE
                    and not _vdpa_nics(dom, mac) and key in aliases):
                self._removed(dom, aliases.pop(key))

        self.useFixture(fixtures.MonkeyPatch(
            _MODULE + '._parse_nic_info', parse_nic_info))
        self.useFixture(fixtures.MonkeyPatch(
            _MODULE + '.Domain.detachDeviceFlags', detach_device_flags))

    @staticmethod
    def _removed(dom, alias):
        callbacks = dom._connection._event_callbacks
        entry = callbacks.get(fakelibvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED)
        if entry is not None:
            callback, opaque = entry
            callback(dom._connection, dom, alias, opaque)
