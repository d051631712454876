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
network, Nova's flavor and image meta, the vDPA device, the host's libvirt
and QEMU versions, Nova's ``[libvirt]`` queue options - into a
:class:`~nova_vdpa.libvirt.config.LibvirtConfigGuestVdpaInterface`. It
reads no configuration and touches no host: the Nova facade gathers the
facts and calls it, so every decision here is a unit test away.

What a flavor or image asks for is decided by Nova's own functions
(``nova.virt.hardware.get_vif_multiqueue_constraint`` and
``get_packed_virtqueue_constraint``, ``nova.virt.osinfo`` for the model),
and the queue count follows Nova's rule (the vCPUs, capped by ``[libvirt]
max_queues``: :func:`queue_pairs`, which the VIF driver also asks for the
device's ``max_vqp``, so that the device and the interface agree), so a
flavor or image means here exactly what it means to Nova. Only the
vDPA-specific part is ours: the device's queue pairs, ring sizes and
features cap what Nova would render, and every such cut is logged as a
warning naming the port. Nothing is trusted: a value of the
wrong type or range raises InvalidVdpaInterfaceRequest naming it.

It imports the config classes, Nova's hardware/osinfo/objects modules,
the kernel layer's MAC check and oslo.log, nothing of Nova's driver.

What libvirt 9.0 and QEMU 7.2 (Debian 12) do with each element for a vdpa
interface, seen in the test bed (``tests/functional/test_libvirt_vdpa.py``
shows each case against the real daemons). Every case was run again on
libvirt 11.3 and QEMU 10.0 (Debian 13, ``tools/testbed.py --userspace
trixie``): each behaved the same there, except where a point names both
versions (the paused detach, live migration); the designer decides those
by version.

* ``<mac address=...>``: a multicast MAC is refused at define time, and
  libvirt stores and reports a MAC in lowercase. Nova finds the live
  interface to detach by comparing MACs as strings, so an uppercase MAC
  would no longer match. So the MAC must be unicast and is rendered
  lowercase.
* ``<mtu size=.../>``: libvirt rejects the domain at define time
  ("setting MTU on interface type vdpa is not supported yet", upstream
  ``qemuDomainNetSupportsMTU`` lists only tap-like types). The guest reads
  the MTU from the vDPA device's config space instead, set when the device
  is created (``vdpa dev add ... mtu N``). So the MTU is never rendered;
  when the network's MTU differs from the device's, or the device's is
  unknown, a warning says so.
* ``<model type=...>``: anything but ``virtio`` is rejected ("invalid model
  for interface of type 'vdpa'"); without ``<model>`` libvirt fills in
  ``virtio``. We always render ``virtio``, so what libvirt reports back
  equals what we sent (``<driver page_per_vq>`` is itself refused for a
  non-virtio model); an image asking for another model gets a warning.
* ``<driver queues='N'/>``: accepted whatever the device offers. On
  vdpa_sim_net (no ``VIRTIO_NET_F_MQ``, one queue pair) ``queues='2'``
  still starts with ``mq=on`` and more MSI-X vectors on QEMU's virtio-net,
  while the device can never give the guest a second pair: a silent no-op.
  ``queues='1'`` is dropped by libvirt from the XML it reports. So queues
  are rendered only when above 1, Nova's count capped by the device's
  queue pairs.
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
  QEMU 10.0 closes it at the detach, paused or not
  (``tests/functional/test_libvirt_paused_detach.py`` shows both):
  :func:`paused_detach_releases`.
* Live migration (``tests/functional/test_migration.py``, two libvirtd
  instances as two hosts): QEMU 7.2 refuses it ("Migration disabled: vhost
  lacks VHOST_F_LOG_ALL feature.", passed on by libvirt 9.0 in the error,
  :func:`migration_refused`); QEMU 10.0 with libvirt 11.3 migrates a
  running guest to another vDPA device named in the destination XML, the
  interface staying in the guest, and closes the source chardev when the
  source QEMU exits: :func:`live_migration_possible`. Releases in between
  were not tried and count as unable. Those guests boot no OS, so this is
  the control path only, never the datapath.
* Guest memory (``tests/functional/test_datapath.py``, iPXE guests that
  ping through the device): a device that maps guest memory by virtual
  address (vdpa_sim with ``use_va=1``, VDUSE) carried frames for a guest
  with Nova's file-backed shared memory and none for one with QEMU's
  default private RAM; with physical addresses (``use_va=0``, hardware)
  any guest does. :func:`check_guest_memory` refuses the private case.
"""

import collections.abc
import dataclasses
import re
import typing as ty

# (imported as modules: mypy sees this repository's nova/ namespace first)
import nova.objects as objects
import nova.virt.hardware as hardware
import nova.virt.osinfo as osinfo
from oslo_log import log as logging
from oslo_utils import strutils
from oslo_utils import units

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa import exception
from nova_vdpa.kernel import validate
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

VIRTIO_MODEL = 'virtio'

#: The oldest QEMU seen to live-migrate a guest with a vhost-vdpa netdev
#: (10.0, Debian 13, in the test bed; 7.2 refuses, releases in between
#: were not tried): below it, a vdpa port must be unplugged first.
MIN_QEMU_VDPA_MIGRATION = 10000000

#: The oldest QEMU seen to close the chardev of an interface detached
#: from a paused guest (7.2 keeps it until the guest is destroyed).
MIN_QEMU_PAUSED_DETACH_RELEASE = 10000000

#: QEMU's migration blocker for a vhost device that cannot log dirty pages
#: (QEMU 7.2 on a vhost-vdpa netdev without shadow virtqueues); libvirt
#: passes it on in the error of a refused migration.
QEMU_VDPA_MIGRATION_BLOCKER = 'vhost lacks VHOST_F_LOG_ALL feature'

#: What a vhost-vdpa node path looks like (tests whose fake kernel keeps
#: its nodes in a temporary folder replace it).
CHARDEV_RE = re.compile(r'/dev/vhost-vdpa-[0-9]+')


def _bad(what: str, value: object,
         reason: str) -> exception.InvalidVdpaInterfaceRequest:
    return exception.InvalidVdpaInterfaceRequest(
        reason='%s %r %s' % (what, value, reason))


def _check_int(what: str, value: object, minimum: int = 1,
               maximum: int | None = None, optional: bool = False) -> None:
    """:raises: InvalidVdpaInterfaceRequest unless an int in range."""
    if value is None and optional:
        return
    if (not isinstance(value, int) or isinstance(value, bool)
            or value < minimum or (maximum is not None and value > maximum)):
        raise _bad(what, value, 'is not an integer from %d%s' % (
            minimum, ' to %d' % maximum if maximum is not None else ' up'))


@dataclasses.dataclass(frozen=True)
class Port:
    """What the designer needs of a Neutron port.

    :param mac: the port's MAC address, a unicast ``xx:xx:xx:xx:xx:xx``.
    :param mtu: the MTU of the port's network, ``None`` if unknown.
    :param id: the Neutron port's id, for log messages.
    :raises: InvalidVdpaInterfaceRequest naming a bad value.
    """

    mac: str
    mtu: int | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        problem = validate.mac_problem(self.mac)
        if problem:
            raise exception.InvalidVdpaInterfaceRequest(
                reason='port.mac: %s' % problem)
        _check_int('port.mtu', self.mtu, validate.MTU_MIN, validate.MTU_MAX,
                   optional=True)
        if self.id is not None and not isinstance(self.id, str):
            raise _bad('port.id', self.id, 'is not a string')

    def __str__(self) -> str:
        if self.id:
            return 'port %s (MAC %s)' % (self.id, self.mac.lower())
        return 'port with MAC %s' % self.mac.lower()


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
    :raises: InvalidVdpaInterfaceRequest naming a bad value.
    """

    chardev: str
    max_queue_pairs: int = 1
    max_vq_size: int | None = None
    features: int | None = None
    mtu: int | None = None

    def __post_init__(self) -> None:
        if (not isinstance(self.chardev, str)
                or not CHARDEV_RE.fullmatch(self.chardev)):
            raise _bad('device.chardev', self.chardev,
                       'is not a /dev/vhost-vdpa-N path')
        _check_int('device.max_queue_pairs', self.max_queue_pairs, 1,
                   validate.MAX_VQ_PAIRS)
        _check_int('device.max_vq_size', self.max_vq_size, 1, 0xffff,
                   optional=True)
        _check_int('device.features', self.features, 0, (1 << 64) - 1,
                   optional=True)
        _check_int('device.mtu', self.mtu, validate.MTU_MIN,
                   validate.MTU_MAX, optional=True)


def device_of(allocation: vdpa_allocator.Allocation) -> Device:
    """What the designer needs of an allocated device, from the kernel."""
    return Device(chardev=allocation.chardev,
                  max_queue_pairs=allocation.config.max_vq_pairs or 1,
                  max_vq_size=allocation.device.max_vq_size,
                  features=allocation.config.device_features,
                  mtu=allocation.config.mtu)


@dataclasses.dataclass(frozen=True)
class Host:
    """The host's versions, as libvirt reports them (6.9.0 is 6009000).

    :param libvirt_version: ``virConnectGetLibVersion()``.
    :param qemu_version: ``virConnectGetVersion()``.
    :raises: InvalidVdpaInterfaceRequest naming a bad value.
    """

    libvirt_version: int
    qemu_version: int

    def __post_init__(self) -> None:
        _check_int('host.libvirt_version', self.libvirt_version)
        _check_int('host.qemu_version', self.qemu_version)


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


def live_migration_possible(host: Host) -> bool:
    """Whether this host's QEMU migrates a vdpa interface live.

    Decided by version (see MIN_QEMU_VDPA_MIGRATION); a host below it
    needs the port unplugged before a live migration and plugged again on
    the destination.
    """
    return host.qemu_version >= MIN_QEMU_VDPA_MIGRATION


def paused_detach_releases(host: Host) -> bool:
    """Whether a detach from a paused guest frees the vDPA device.

    True when QEMU closes the chardev at once; otherwise the device stays
    busy until the guest is resumed or destroyed (see the module
    docstring).
    """
    return host.qemu_version >= MIN_QEMU_PAUSED_DETACH_RELEASE


def migration_refused(error: str) -> bool:
    """Whether a libvirt migration error is QEMU's vhost-vdpa blocker.

    :param error: the text of the ``libvirtError`` a migration raised.
    """
    return QEMU_VDPA_MIGRATION_BLOCKER in error


def _check_flavor(flavor: ty.Any) -> None:
    """:raises: InvalidVdpaInterfaceRequest unless a usable Nova flavor."""
    _check_int('flavor.vcpus', getattr(flavor, 'vcpus', None))
    if not callable(getattr(flavor, 'get', None)):
        raise _bad('flavor', flavor, 'has no get() (not a Nova Flavor)')
    specs = flavor.get('extra_specs', {})
    if not isinstance(specs, collections.abc.Mapping):
        raise _bad('flavor.extra_specs', specs, 'is not a mapping')


def _image_meta(image_meta: ty.Any) -> 'objects.ImageMeta':
    """Nova's ImageMeta for ``image_meta`` (an ImageMeta, a dict or None).

    :raises: InvalidVdpaInterfaceRequest for another type or a property
        Nova's ImageMetaProps refuses.
    """
    if image_meta is None:
        image_meta = {}
    if isinstance(image_meta, dict):
        try:
            # As Nova's VIF driver does with a dict.
            return objects.ImageMeta.from_dict(image_meta)
        except (ValueError, TypeError) as e:
            raise _bad('image_meta', image_meta, 'is refused by Nova: %s' % e)
    if not isinstance(image_meta, objects.ImageMeta):
        raise _bad('image_meta', image_meta,
                   'is neither a Nova ImageMeta nor a dict')
    if not image_meta.obj_attr_is_set('properties'):
        raise _bad('image_meta', image_meta, 'has no properties')
    return image_meta


def queue_pairs(flavor: ty.Any, image_meta: ty.Any,
                max_queues: int | None) -> int | None:
    """The queue pairs a port asks for: Nova's multiqueue rule.

    One answer for both ends of the port: the device's ``max_vqp`` (the
    VIF driver's allocation request) and the guest XML's ``<driver
    queues>`` (:func:`get_vdpa_interface_config`, which also caps it by
    the device made). Nova's count is the vCPUs, capped by ``[libvirt]
    max_queues``; a device made with more pairs than the guest's queues
    would hold VF queue resources nothing uses.

    :param flavor: the instance's ``nova.objects.Flavor``.
    :param image_meta: a ``nova.objects.ImageMeta``, a dict or None.
    :param max_queues: Nova's ``[libvirt] max_queues`` (None: no cap).
    :returns: the pairs, or None when multiqueue is off.
    :raises: nova.exception.FlavorImageConflict if the flavor and image
        disagree; InvalidVdpaInterfaceRequest naming a bad value.
    """
    _check_flavor(flavor)
    _check_int('[libvirt] max_queues', max_queues, optional=True)
    if not hardware.get_vif_multiqueue_constraint(flavor,
                                                  _image_meta(image_meta)):
        return None
    return min(flavor.vcpus, max_queues or flavor.vcpus)


def _queues(port: Port, device: Device, flavor: ty.Any,
            image_meta: 'objects.ImageMeta',
            max_queues: int | None) -> int | None:
    """The ``<driver queues>`` to render, or None."""
    wanted = queue_pairs(flavor, image_meta, max_queues)
    if wanted is None:
        return None
    queues = min(wanted, device.max_queue_pairs)
    if queues < wanted:
        LOG.warning('%(port)s: multiqueue asks for %(wanted)d queue pairs '
                    '(vCPUs and [libvirt] max_queues) but vDPA device '
                    '%(dev)s offers %(pairs)d; %(what)s',
                    {'port': port, 'wanted': wanted, 'dev': device.chardev,
                     'pairs': device.max_queue_pairs,
                     'what': ('rendering %d' % queues if queues > 1 else
                              'multiqueue is not rendered')})
    return queues if queues > 1 else None


def _queue_size(port: Port, option: str, configured: int | None,
                device: Device) -> int | None:
    """The ring size to render for ``[libvirt] <option>``, or ``None``."""
    if configured is None:
        return None
    size = configured
    if device.max_vq_size is not None and size > device.max_vq_size:
        size = device.max_vq_size
    if (size < QEMU_MIN_QUEUE_SIZE or size > QEMU_MAX_QUEUE_SIZE
            or size & (size - 1)):
        LOG.warning('%(port)s: [libvirt] %(opt)s = %(conf)d cannot be used '
                    'with vDPA device %(dev)s (largest ring %(max)s; QEMU '
                    'needs a power of two from %(min)d to %(qmax)d): left '
                    'to the default',
                    {'port': port, 'opt': option, 'conf': configured,
                     'dev': device.chardev, 'max': device.max_vq_size,
                     'min': QEMU_MIN_QUEUE_SIZE, 'qmax': QEMU_MAX_QUEUE_SIZE})
        return None
    if size != configured:
        LOG.warning('%(port)s: [libvirt] %(opt)s = %(conf)d is larger than '
                    'the largest ring of vDPA device %(dev)s: rendering '
                    '%(size)d', {'port': port, 'opt': option,
                                 'conf': configured, 'dev': device.chardev,
                                 'size': size})
    return size


def _warn_mtu(port: Port, device: Device) -> None:
    """The network's MTU cannot be rendered: say when that matters."""
    if port.mtu is None or port.mtu == device.mtu:
        return
    if device.mtu is None:
        LOG.warning('%(port)s: the network has MTU %(mtu)d, which libvirt '
                    'cannot set for vdpa, and the MTU of vDPA device %(dev)s '
                    'is unknown: the guest may see another MTU',
                    {'port': port, 'mtu': port.mtu, 'dev': device.chardev})
    else:
        LOG.warning('%(port)s: the network has MTU %(mtu)d but vDPA device '
                    '%(dev)s has MTU %(dev_mtu)d; the guest sees the '
                    "device's MTU (libvirt cannot set it for vdpa)",
                    {'port': port, 'mtu': port.mtu, 'dev': device.chardev,
                     'dev_mtu': device.mtu})


#: Nova's smallest page size, in KiB: a ``hw:mem_page_size`` above it is
#: a huge page size.
SMALL_PAGE_KIB = 4


def _huge_pages(flavor: ty.Any, image: 'objects.ImageMeta') -> bool:
    """Whether the flavor (and image) ask Nova for huge pages.

    Follows Nova's reading of ``hw:mem_page_size`` and the image's
    ``hw_mem_page_size`` (an image may narrow ``any`` or ``large``);
    ``any`` may end on small pages, so it does not count. A value Nova
    refuses counts as none: Nova fails that build itself.
    """
    wanted = flavor.get('extra_specs', {}).get('hw:mem_page_size')
    from_image = image.properties.get('hw_mem_page_size', None)
    if wanted in ('any', 'large') and from_image:
        wanted = from_image
    if not isinstance(wanted, str) or wanted in ('', 'small', 'any'):
        return False
    if wanted == 'large':
        return True
    try:
        kib = (int(wanted) if wanted.isdigit()
               else strutils.string_to_bytes(wanted, return_int=True)
               // units.Ki)
    except ValueError:
        return False
    return kib > SMALL_PAGE_KIB


def check_guest_memory(port: Port, mgmtdev: str, *, flavor: ty.Any,
                       image_meta: ty.Any = None,
                       file_backed_memory: int = 0) -> None:
    """Refuse a guest a virtual-address device cannot reach.

    For a port whose device maps guest memory by virtual address (see
    ``VdpaSysfs.uses_virtual_addresses``): vhost-vdpa then maps only
    file-backed, shared guest memory. Nova renders such memory for huge
    pages (``hw:mem_page_size``: its NUMA cells get ``memAccess='shared'``
    over hugetlbfs) and for ``[libvirt] file_backed_memory`` (``<source
    type='file'/><access mode='shared'/>``); with neither, QEMU's RAM is
    anonymous and private and the device would carry no frame, silently.

    Refusing is deliberate, rather than adding ``<memoryBacking>`` to the
    guest: Nova owns that element (``LibvirtDriver.
    _get_guest_memory_backing_config``, built from the flavor and the host
    options, with its own checks such as huge pages vs file-backed memory),
    and shared guest memory changes how the host accounts and reclaims it
    (shared memory is shmem: no KSM merging, swapped as shmem), which an
    operator chooses with the flavor, not a NIC. Hardware vDPA devices use
    IOVAs and never need it; only VDUSE and the simulator do.

    :param port: the port (for the message).
    :param mgmtdev: the management device that will serve it.
    :param flavor: the instance's Nova flavor.
    :param image_meta: the instance's image meta (ImageMeta, dict or None).
    :param file_backed_memory: Nova's ``[libvirt] file_backed_memory``.
    :raises: SharedGuestMemoryRequired naming the flavor setting that
        fixes it; InvalidVdpaInterfaceRequest for a bad input.
    """
    _check_flavor(flavor)
    image = _image_meta(image_meta)
    _check_int('[libvirt] file_backed_memory', file_backed_memory, 0)
    if file_backed_memory > 0 or _huge_pages(flavor, image):
        return
    raise exception.SharedGuestMemoryRequired(port=str(port),
                                              mgmtdev=mgmtdev)


def get_vdpa_interface_config(
    port: Port,
    device: Device,
    host: Host,
    *,
    flavor: 'objects.Flavor',
    image_meta: 'objects.ImageMeta | dict[str, ty.Any] | None' = None,
    rx_queue_size: int | None = None,
    tx_queue_size: int | None = None,
    max_queues: int | None = None,
) -> config.LibvirtConfigGuestVdpaInterface:
    """Build the guest interface of a vDPA port.

    :param port: the port's MAC and its network's MTU.
    :param device: the vDPA device serving the port.
    :param host: the host's libvirt and QEMU versions.
    :param flavor: the instance's ``nova.objects.Flavor`` (``vcpus``,
        ``hw:vif_multiqueue_enabled``, ``hw:virtio_packed_ring``).
    :param image_meta: the instance's ``nova.objects.ImageMeta``, or a dict
        Nova's ``ImageMeta.from_dict`` takes (``hw_vif_multiqueue_enabled``,
        ``hw_virtio_packed_ring``, ``hw_vif_model``); None for no image.
    :param rx_queue_size: Nova's ``[libvirt] rx_queue_size``.
    :param tx_queue_size: Nova's ``[libvirt] tx_queue_size``.
    :param max_queues: Nova's ``[libvirt] max_queues``.
    :returns: the interface config, ready for the guest's device list.
    :raises: HypervisorTooOld if libvirt or QEMU cannot do vdpa interfaces.
    :raises: nova.exception.FlavorImageConflict if the flavor and image
        disagree (raised by Nova's own policy functions).
    :raises: InvalidVdpaInterfaceRequest naming an input of the wrong type
        or range.
    """
    for what, value, cls in (('port', port, Port), ('device', device, Device),
                             ('host', host, Host)):
        if not isinstance(value, cls):
            raise _bad(what, value, 'is not a designer.%s' % cls.__name__)
    _check_flavor(flavor)
    image = _image_meta(image_meta)
    for option, number in (('rx_queue_size', rx_queue_size),
                           ('tx_queue_size', tx_queue_size),
                           ('max_queues', max_queues)):
        _check_int('[libvirt] ' + option, number, optional=True)
    check_host(host)

    conf = config.LibvirtConfigGuestVdpaInterface()
    # libvirt stores the MAC lowercase; Nova's detach compares strings.
    conf.mac_addr = port.mac.lower()
    conf.source_dev = device.chardev
    conf.model = VIRTIO_MODEL

    model = osinfo.HardwareProperties(image).network_model
    if model is not None and model != VIRTIO_MODEL:
        LOG.warning('%(port)s: the image asks for NIC model %(model)s, but '
                    'libvirt accepts only virtio for vdpa: rendering virtio',
                    {'port': port, 'model': model})

    _warn_mtu(port, device)

    conf.vhost_queues = _queues(port, device, flavor, image, max_queues)
    conf.vhost_rx_queue_size = _queue_size(port, 'rx_queue_size',
                                           rx_queue_size, device)
    conf.vhost_tx_queue_size = _queue_size(port, 'tx_queue_size',
                                           tx_queue_size, device)

    if hardware.get_packed_virtqueue_constraint(flavor, image):
        if (device.features is not None
                and not device.features >> VIRTIO_F_RING_PACKED & 1):
            LOG.warning('%(port)s: packed virtqueues requested, but vDPA '
                        'device %(dev)s does not offer them: the guest gets '
                        'split rings', {'port': port, 'dev': device.chardev})
        else:
            conf.driver_packed = True

    if host.libvirt_version >= MIN_LIBVIRT_PAGE_PER_VQ:
        conf.driver_page_per_vq = True

    return conf
