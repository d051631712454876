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

"""Object <-> XML for libvirt's ``<interface type='vdpa'>``.

The room for the guest interface of a vDPA port as libvirt spells it, and
nothing else: no policy (which options a port gets is decided in
:mod:`nova_vdpa.libvirt.designer`), no host access, no libvirt connection.

:class:`LibvirtConfigGuestVdpaInterface` derives from Nova's own
``LibvirtConfigGuestInterface`` so that it composes into Nova's guest
config (``LibvirtConfigGuest.add_device``) and Nova's driver, which tests
interfaces with ``isinstance`` and finds a live interface to detach by
comparing configs, treats it as any other interface. Nova's own pieces are
used where Nova has them: its guest PCI address class (so Nova's device
metadata code reads ``device_addr`` as usual) and its on/off parsing. It
imports only Nova's config module, Nova's exceptions and lxml.
"""

from typing import Any

from lxml import etree
# (imported as a module: mypy sees this repository's nova/ namespace first)
import nova.exception as nova_exception
from nova.virt.libvirt import config as vconfig

from nova_vdpa import exception

_PCI_FIELDS = ('domain', 'bus', 'slot', 'function')


def _int(node: etree._Element, attr: str) -> int:
    value = node.get(attr)
    if value is None:
        raise ValueError('<%s> has no %s' % (node.tag, attr))
    return int(value)


def pci_address(domain: int, bus: int, slot: int, function: int
                ) -> vconfig.LibvirtConfigGuestDeviceAddressPCI:
    """Nova's guest PCI address, spelt as libvirt reports it (0x..)."""
    addr = vconfig.LibvirtConfigGuestDeviceAddressPCI()
    addr.domain = '0x%04x' % domain
    addr.bus = '0x%02x' % bus
    addr.slot = '0x%02x' % slot
    addr.function = '0x%x' % function
    return addr


def _pci_numbers(addr: Any) -> tuple[int, ...] | None:
    """A parsed address as numbers, what equality compares.

    :raises: ValueError if a field is missing or not a number.
    """
    if addr is None:
        return None
    if not isinstance(addr, vconfig.LibvirtConfigGuestDeviceAddressPCI):
        raise ValueError('only PCI addresses are supported, not %r'
                         % getattr(addr, 'type', addr))
    # libvirt writes hex with 0x; int(x, 0) reads that and decimal.
    return tuple(int(getattr(addr, f) or '', 0) for f in _PCI_FIELDS)


class LibvirtConfigGuestVdpaInterface(vconfig.LibvirtConfigGuestInterface):
    """``<interface type='vdpa'>`` with the options Nova leaves out.

    Attribute names are Nova's where Nova has the option (``mac_addr``,
    ``source_dev``, ``model``, ``mtu``, ``vhost_queues``, ...), so code
    written for Nova's interface config reads them unchanged. ``None``
    means "not in the XML"; the on/off options are ``True``/``False``/
    ``None`` so that ``packed='off'`` survives a round trip.

    Two configs of this class are equal when every value is equal, so
    ``parse(format(x)) == x``. Compared with a plain Nova interface config,
    Nova's own identity match applies (type, MAC, source), which is how
    Nova finds the live interface of a port to detach.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net_type = 'vdpa'
        self.mac_addr: str | None = None
        self.source_dev: str | None = None
        self.model: str | None = None
        self.mtu: int | None = None
        self.vhost_queues: int | None = None
        self.vhost_rx_queue_size: int | None = None
        self.vhost_tx_queue_size: int | None = None
        self.driver_packed: bool | None = None
        self.driver_page_per_vq: bool | None = None
        self.alias: str | None = None
        self.device_addr: Any = None  # Nova's PCI address, or None
        self.boot_order: int | None = None

    # The values that make up a vdpa interface, in XML order.
    FIELDS = ('mac_addr', 'source_dev', 'model', 'mtu', 'vhost_queues',
              'vhost_rx_queue_size', 'vhost_tx_queue_size', 'driver_packed',
              'driver_page_per_vq', 'boot_order', 'alias', 'device_addr')

    # Attributes of <driver> and the field each one fills.
    _DRIVER_INTS = (('queues', 'vhost_queues'),
                    ('rx_queue_size', 'vhost_rx_queue_size'),
                    ('tx_queue_size', 'vhost_tx_queue_size'))
    _DRIVER_SWITCHES = (('packed', 'driver_packed'),
                        ('page_per_vq', 'driver_page_per_vq'))

    def values(self) -> dict[str, Any]:
        """Return every field by name: what equality compares.

        The PCI address is given as its four numbers.
        """
        values = {name: getattr(self, name) for name in self.FIELDS}
        values['device_addr'] = _pci_numbers(self.device_addr)
        return values

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return bool(self.values() == other.values())
        return bool(super().__eq__(other))

    def format_dom(self) -> etree._Element:
        """Return the ``<interface type='vdpa'>`` element."""
        dev = self._new_node(self.root_name, type='vdpa')
        if self.mac_addr is not None:
            dev.append(etree.Element('mac', address=self.mac_addr))
        if self.source_dev is not None:
            dev.append(etree.Element('source', dev=self.source_dev))
        if self.model is not None:
            dev.append(etree.Element('model', type=self.model))
        driver = {}
        for attr, field in self._DRIVER_INTS:
            value = getattr(self, field)
            if value is not None:
                driver[attr] = str(value)
        for attr, field in self._DRIVER_SWITCHES:
            value = getattr(self, field)
            if value is not None:
                driver[attr] = self.get_on_off_str(value)
        if driver:
            dev.append(etree.Element('driver', driver))
        if self.mtu is not None:
            dev.append(etree.Element('mtu', size=str(self.mtu)))
        if self.boot_order is not None:
            dev.append(etree.Element('boot', order=str(self.boot_order)))
        if self.alias is not None:
            dev.append(etree.Element('alias', name=self.alias))
        if self.device_addr is not None:
            dev.append(self.device_addr.format_dom())
        return dev

    def parse_dom(self, xmldoc: etree._Element) -> None:
        """Fill this config from an ``<interface type='vdpa'>`` element.

        Elements this class does not model (``<link>``, ``<rom>``, ...)
        are ignored, as Nova's config classes do.

        :raises: InvalidInterfaceXml if the element is not a vdpa interface
            or a value is malformed.
        """
        if xmldoc.tag != self.root_name or xmldoc.get('type') != 'vdpa':
            raise exception.InvalidInterfaceXml(
                reason="expected <interface type='vdpa'>, got <%s type=%r>"
                % (xmldoc.tag, xmldoc.get('type')))
        try:
            for child in xmldoc:
                self._parse_child(child)
        except (ValueError, nova_exception.InvalidInput) as e:
            raise exception.InvalidInterfaceXml(reason=str(e))

    def _parse_child(self, child: etree._Element) -> None:
        if child.tag == 'mac':
            self.mac_addr = child.get('address')
        elif child.tag == 'source':
            self.source_dev = child.get('dev')
        elif child.tag == 'model':
            self.model = child.get('type')
        elif child.tag == 'driver':
            for attr, field in self._DRIVER_INTS:
                if child.get(attr) is not None:
                    setattr(self, field, _int(child, attr))
            for attr, field in self._DRIVER_SWITCHES:
                if child.get(attr) is not None:
                    setattr(self, field, self.parse_on_off_str(
                        child.get(attr)))
        elif child.tag == 'mtu':
            self.mtu = _int(child, 'size')
        elif child.tag == 'boot':
            self.boot_order = _int(child, 'order')
        elif child.tag == 'alias':
            self.alias = child.get('name')
        elif child.tag == 'address' and child.get('type') == 'pci':
            addr = vconfig.LibvirtConfigGuestDeviceAddress.parse_dom(child)
            try:
                _pci_numbers(addr)
            except ValueError:
                raise ValueError('bad PCI address %s'
                                 % etree.tostring(child).decode())
            self.device_addr = addr

    @classmethod
    def from_xml(cls, xml: str | bytes) -> 'LibvirtConfigGuestVdpaInterface':
        """Parse an ``<interface type='vdpa'>`` document.

        :param xml: the interface XML, e.g. from a domain's XML.
        :returns: a new config.
        :raises: InvalidInterfaceXml if it is not a vdpa interface.
        """
        try:
            node = etree.fromstring(xml)
        except etree.XMLSyntaxError as e:
            raise exception.InvalidInterfaceXml(reason=str(e))
        conf = cls()
        conf.parse_dom(node)
        return conf
