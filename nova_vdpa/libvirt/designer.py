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

"""Policy: which ``<interface type='vdpa'>`` a port gets.

:func:`get_vdpa_interface_config` turns typed facts - the port and its
network, the flavor and image, the vDPA device, the host's libvirt and QEMU
versions, Nova's ``[libvirt]`` queue sizes - into a
:class:`~nova_vdpa.libvirt.config.LibvirtConfigGuestVdpaInterface`. It
reads no configuration and touches no host: the Nova facade gathers the
facts and calls it, so every decision here is a unit test away.

It imports the config classes, oslo.utils and oslo.log, nothing of Nova's
driver.

What libvirt 9.0 and QEMU 7.2 do with each element for a vdpa interface,
seen in the test bed (``tests/functional/test_libvirt_vdpa.py`` shows each
case against the real daemons):

* ``<mtu size=.../>``: libvirt rejects the domain at define time
  ("setting MTU on interface type vdpa is not supported yet", upstream
  ``qemuDomainNetSupportsMTU`` lists only tap-like types). The guest reads
  the MTU from the vDPA device's config space instead, set when the device
  is created (``vdpa dev add ... mtu N``). So the MTU is never rendered;
  when the device's MTU is known and differs from the network's, a warning
  says so.
* ``<model type=...>``: anything but ``virtio`` is rejected ("invalid model
  for interface of type 'vdpa'"); without ``<model>`` libvirt fills in
  ``virtio``. We always render ``virtio``, so what libvirt reports back
  equals what we sent (``<driver page_per_vq>`` is itself refused for a
  non-virtio model).
* ``<driver queues='N'/>``: accepted whatever the device offers. On
  vdpa_sim_net (no ``VIRTIO_NET_F_MQ``, one queue pair) ``queues='2'``
  still starts with ``mq=on`` and more MSI-X vectors on QEMU's virtio-net,
  while the device can never give the guest a second pair: a silent no-op.
  ``queues='1'`` is dropped by libvirt from the XML it reports. So queues
  are rendered only when above 1, capped by the device's queue pairs and
  the vCPU count.
* ``rx_queue_size`` / ``tx_queue_size``: accepted (QEMU allows tx sizes
  above 256 for vhost-vdpa). QEMU needs a power of two from 256 to 1024,
  and the ring size is negotiated with the device only when the guest
  driver starts, where a ring larger than the device's ``max_vq_size``
  fails. So a size is capped by the device's ``max_vq_size`` when known
  and left out when that cap falls below QEMU's minimum.
* ``packed='on'``: accepted; the guest gets a packed ring only if the
  device offers ``VIRTIO_F_RING_PACKED`` (vdpa_sim_net does not). So it is
  rendered when the flavor or image asks for it and the device does not
  say it lacks the feature.
* ``page_per_vq='on'`` (libvirt >= 7.9.0): accepted. It gives every
  virtqueue its own notification page, which QEMU needs to map the vDPA
  device's doorbells straight into the guest (host notifiers) instead of
  relaying every kick. Rendered whenever libvirt has it.
* ``<boot order>``, ``<alias name='ua-...'>``, ``<address type='pci'>``:
  accepted and reported back as given.
* Hotplug: attach and detach work on a slot that can take them (a free
  PCIe root port; i440fx without ACPI answers "Bus 'pci.0' does not
  support hotplugging"). After a detach the interface is gone from the
  domain and from QEMU, and in a running guest QEMU closes the chardev,
  which can be opened again. In a *paused* guest QEMU 7.2 closes no fd of
  a removed fdset (its cleanup skips a VM that is not running), so there
  the detached (or refused-attach) device stayed busy until the domain was
  destroyed: a new open got EBUSY, and ``vdpa dev del`` would block.
"""

import dataclasses
import typing as ty

from oslo_log import log as logging
from oslo_utils import strutils

from nova_vdpa import exception
from nova_vdpa.libvirt import config

LOG = logging.getLogger(__name__)

#: ``<interface type='vdpa'>`` appeared in libvirt 6.9.0 ...
MIN_LIBVIRT_VDPA = 6009000
#: ... and needs QEMU's ``-netdev vhost-vdpa`` with fd passing, 5.1.0.
MIN_QEMU_VDPA = 5001000
#: ``<driver page_per_vq=...>``
MIN_LIBVIRT_PAGE_PER_VQ = 7009000

#: QEMU's bounds for virtio-net ``rx_queue_size`` / ``tx_queue_size``.
QEMU_MIN_QUEUE_SIZE = 256
QEMU_MAX_QUEUE_SIZE = 1024

#: virtio feature bit of the packed virtqueue layout.
VIRTIO_F_RING_PACKED = 34


class _Properties(ty.Protocol):
    """Anything with ``get``: a dict, or Nova's ``ImageMetaProps``."""

    def get(self, key: str, default: ty.Any = None) -> ty.Any:
        ...


@dataclasses.dataclass(frozen=True)
class Port:
    """What the designer needs of a Neutron port.

    :param mac: the port's MAC address.
    :param mtu: the MTU of the port's network, ``None`` if unknown.
    """

    mac: str
    mtu: int | None = None


@dataclasses.dataclass(frozen=True)
class Device:
    """What the designer needs of the port's vDPA device.

    :param chardev: the vhost-vdpa character device, ``/dev/vhost-vdpa-N``.
    :param max_queue_pairs: data queue pairs the device offers (1 without
        ``VIRTIO_NET_F_MQ``).
    :param max_vq_size: the largest virtqueue the device accepts, ``None``
        if unknown.
    :param features: the virtio feature bits the device offers, ``None``
        if unknown.
    :param mtu: the MTU in the device's config space, ``None`` if unknown.
    """

    chardev: str
    max_queue_pairs: int = 1
    max_vq_size: int | None = None
    features: int | None = None
    mtu: int | None = None


@dataclasses.dataclass(frozen=True)
class Host:
    """The host's versions, as libvirt reports them (6.9.0 is 6009000).

    :param libvirt_version: ``virConnectGetLibVersion()``.
    :param qemu_version: ``virConnectGetVersion()``.
    """

    libvirt_version: int
    qemu_version: int


def version_str(version: int) -> str:
    """Return libvirt's integer version as ``major.minor.micro``."""
    return '%d.%d.%d' % (version // 1000000, version // 1000 % 1000,
                         version % 1000)


def check_host(host: Host) -> None:
    """Check that the host can run vdpa interfaces at all.

    :raises: HypervisorTooOld naming the component and the version needed.
    """
    for component, found, required in (
            ('libvirt', host.libvirt_version, MIN_LIBVIRT_VDPA),
            ('QEMU', host.qemu_version, MIN_QEMU_VDPA)):
        if found < required:
            raise exception.HypervisorTooOld(
                component=component, required=version_str(required),
                found=version_str(found))


def _requested(
    name: str,
    extra_specs: ty.Mapping[str, str],
    image_props: _Properties,
) -> bool:
    """Read a boolean asked for as ``hw:<name>`` and/or ``hw_<name>``.

    Like Nova, the flavor and the image may both set it only if they agree.

    :raises: InvalidVdpaInterfaceRequest if they disagree or a value is
        not a boolean.
    """
    flavor_value = extra_specs.get('hw:' + name)
    image_value = image_props.get('hw_' + name)
    try:
        flavor_bool = (None if flavor_value is None else
                       strutils.bool_from_string(flavor_value, strict=True))
        image_bool = (None if image_value is None else
                      strutils.bool_from_string(image_value, strict=True))
    except ValueError as e:
        raise exception.InvalidVdpaInterfaceRequest(reason=str(e))
    if (flavor_bool is not None and image_bool is not None
            and flavor_bool != image_bool):
        raise exception.InvalidVdpaInterfaceRequest(
            reason='the flavor has hw:%s=%s but the image has hw_%s=%s'
            % (name, flavor_value, name, image_value))
    return bool(flavor_bool or image_bool)


def _queue_size(
    option: str, configured: int | None, device: Device,
) -> int | None:
    """The ring size to render for ``[libvirt] <option>``, or ``None``."""
    if configured is None:
        return None
    size = configured
    if device.max_vq_size is not None and size > device.max_vq_size:
        size = device.max_vq_size
    if (size < QEMU_MIN_QUEUE_SIZE or size > QEMU_MAX_QUEUE_SIZE
            or size & (size - 1)):
        LOG.warning('[libvirt] %(opt)s = %(conf)d cannot be used with vDPA '
                    'device %(dev)s (largest ring %(max)s; QEMU needs a '
                    'power of two from %(min)d to %(qmax)d): left to the '
                    'default', {'opt': option, 'conf': configured,
                                'dev': device.chardev,
                                'max': device.max_vq_size,
                                'min': QEMU_MIN_QUEUE_SIZE,
                                'qmax': QEMU_MAX_QUEUE_SIZE})
        return None
    return size


def get_vdpa_interface_config(
    port: Port,
    device: Device,
    host: Host,
    *,
    vcpus: int,
    extra_specs: ty.Mapping[str, str] | None = None,
    image_props: _Properties | None = None,
    rx_queue_size: int | None = None,
    tx_queue_size: int | None = None,
) -> config.LibvirtConfigGuestVdpaInterface:
    """Build the guest interface of a vDPA port.

    :param port: the port's MAC and its network's MTU.
    :param device: the vDPA device serving the port.
    :param host: the host's libvirt and QEMU versions.
    :param vcpus: the flavor's vCPU count.
    :param extra_specs: the flavor's extra specs
        (``hw:vif_multiqueue_enabled``, ``hw:virtio_packed_ring``).
    :param image_props: the image's properties, a dict or Nova's
        ``ImageMetaProps`` (``hw_vif_multiqueue_enabled``,
        ``hw_virtio_packed_ring``).
    :param rx_queue_size: Nova's ``[libvirt] rx_queue_size``.
    :param tx_queue_size: Nova's ``[libvirt] tx_queue_size``.
    :returns: the interface config, ready for the guest's device list.
    :raises: HypervisorTooOld if libvirt or QEMU cannot do vdpa interfaces.
    :raises: InvalidVdpaInterfaceRequest if the flavor and image disagree.
    """
    check_host(host)
    specs: ty.Mapping[str, str] = extra_specs or {}
    props: _Properties = image_props if image_props is not None else {}

    conf = config.LibvirtConfigGuestVdpaInterface()
    conf.mac_addr = port.mac
    conf.source_dev = device.chardev
    conf.model = 'virtio'

    if (port.mtu is not None and device.mtu is not None
            and port.mtu != device.mtu):
        LOG.warning('vDPA device %(dev)s has MTU %(dev_mtu)d but the network '
                    'of port %(mac)s has MTU %(mtu)d; the guest sees the '
                    "device's MTU (libvirt cannot set it for vdpa)",
                    {'dev': device.chardev, 'dev_mtu': device.mtu,
                     'mac': port.mac, 'mtu': port.mtu})

    if _requested('vif_multiqueue_enabled', specs, props):
        queues = min(vcpus, device.max_queue_pairs)
        if queues > 1:
            conf.vhost_queues = queues

    conf.vhost_rx_queue_size = _queue_size('rx_queue_size', rx_queue_size,
                                           device)
    conf.vhost_tx_queue_size = _queue_size('tx_queue_size', tx_queue_size,
                                           device)

    if _requested('virtio_packed_ring', specs, props):
        if (device.features is not None
                and not device.features >> VIRTIO_F_RING_PACKED & 1):
            LOG.warning('packed virtqueues requested, but vDPA device %s '
                        'does not offer them: the guest gets split rings',
                        device.chardev)
        else:
            conf.driver_packed = True

    if host.libvirt_version >= MIN_LIBVIRT_PAGE_PER_VQ:
        conf.driver_page_per_vq = True

    return conf
