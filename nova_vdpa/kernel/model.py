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

"""What the vdpa netlink family reports, as typed dataclasses.

Fields use the names ``vdpa -j`` (iproute2) prints, so that a reader can
compare the two. Feature bits are decoded to the names iproute2 uses for
them; bits without a name are kept as their number, as iproute2 prints
them. Only the standard library is imported here.
"""

import dataclasses
import functools
from typing import Any, Iterable

VIRTIO_ID_NET = 1
VIRTIO_ID_BLOCK = 2

_CLASS_NAMES = {VIRTIO_ID_NET: 'net', VIRTIO_ID_BLOCK: 'block'}
_TYPE_NAMES = {VIRTIO_ID_NET: 'network', VIRTIO_ID_BLOCK: 'block'}

# virtio-net device feature bits (virtio spec 5.1.3).
NET_FEATURES = {
    0: 'CSUM', 1: 'GUEST_CSUM', 2: 'CTRL_GUEST_OFFLOADS', 3: 'MTU',
    5: 'MAC', 7: 'GUEST_TSO4', 8: 'GUEST_TSO6', 9: 'GUEST_ECN',
    10: 'GUEST_UFO', 11: 'HOST_TSO4', 12: 'HOST_TSO6', 13: 'HOST_ECN',
    14: 'HOST_UFO', 15: 'MRG_RXBUF', 16: 'STATUS', 17: 'CTRL_VQ',
    18: 'CTRL_RX', 19: 'CTRL_VLAN', 20: 'CTRL_RX_EXTRA',
    21: 'GUEST_ANNOUNCE', 22: 'MQ', 23: 'CTRL_MAC_ADDR',
    24: 'NOTIFY_ON_EMPTY', 27: 'ANY_LAYOUT', 57: 'HASH_REPORT', 60: 'RSS',
    61: 'RSC_EXT', 62: 'STANDBY', 63: 'SPEED_DUPLEX',
}
# Transport bits 28-41 (virtio spec 6) mean the same for every device type.
TRANSPORT_FEATURES = {
    28: 'RING_INDIRECT_DESC', 29: 'RING_EVENT_IDX', 32: 'VERSION_1',
    33: 'ACCESS_PLATFORM', 34: 'RING_PACKED', 35: 'IN_ORDER',
    36: 'ORDER_PLATFORM', 37: 'SR_IOV', 38: 'NOTIFICATION_DATA',
}
_TRANSPORT_BITS = range(28, 42)

F_MTU = 1 << 3
F_MAC = 1 << 5
F_MQ = 1 << 22

VIRTIO_NET_S_LINK_UP = 1
VIRTIO_NET_S_ANNOUNCE = 2


def feature_names(bits: int | None,
                  virtio_id: int = VIRTIO_ID_NET) -> list[str | int]:
    """Decode feature bits to names, lowest bit first.

    :param bits: the feature word (None gives an empty list).
    :param virtio_id: the device type the non-transport bits belong to.
    :returns: names, or the bit number for a bit without a name.
    """
    out: list[str | int] = []
    if not bits:
        return out
    device = NET_FEATURES if virtio_id == VIRTIO_ID_NET else {}
    for bit in range(64):
        if not bits & (1 << bit):
            continue
        table = TRANSPORT_FEATURES if bit in _TRANSPORT_BITS else device
        out.append(table.get(bit, bit))
    return out


def split_mgmtdev(handle: str) -> tuple[str | None, str]:
    """Split a handle: ``pci/0000:08:00.2`` -> ``('pci', '0000:08:00.2')``.

    A handle without a bus gives ``(None, name)``.
    """
    if '/' in handle:
        bus, name = handle.split('/', 1)
        return bus, name
    return None, handle


def join_mgmtdev(bus: str | None, name: str) -> str:
    """The handle iproute2 prints: ``bus/name``, or ``name`` without bus."""
    return '%s/%s' % (bus, name) if bus else name


# A dump gives every management device of a kind the same class bits: the
# tuple is built once per distinct value, not once per device at every
# periodic update. Bounded, as the values come from the kernel.
@functools.lru_cache(maxsize=64)
def _class_ids(classes: int) -> tuple[int, ...]:
    """Bit numbers set in a class mask, up to the highest one set."""
    return tuple(i for i in range(1, min(classes.bit_length(), 64))
                 if classes >> i & 1)


# slots: a dump makes one of these per management device or device at
# every periodic update; without a per-instance dict each takes less
# memory to build and to read back.
@dataclasses.dataclass(frozen=True, slots=True)
class ManagementDevice:
    """A vdpa management device: what can create vDPA devices."""

    bus: str | None
    name: str
    #: bit numbers of the virtio device ids it can create (1 = net)
    supported_class_ids: tuple[int, ...]
    max_supported_vqs: int | None
    supported_features: int | None

    @property
    def handle(self) -> str:
        return join_mgmtdev(self.bus, self.name)

    @property
    def supported_classes(self) -> list[str]:
        return [_CLASS_NAMES.get(i, '< unknown class >')
                for i in self.supported_class_ids]

    @property
    def supported_feature_names(self) -> list[str | int]:
        virtio_id = (self.supported_class_ids[0]
                     if self.supported_class_ids else 0)
        return feature_names(self.supported_features, virtio_id)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> 'ManagementDevice':
        get = attrs.get
        return cls(
            bus=get('VDPA_ATTR_MGMTDEV_BUS_NAME') or None,
            name=attrs['VDPA_ATTR_MGMTDEV_DEV_NAME'],
            supported_class_ids=_class_ids(
                get('VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES') or 0),
            max_supported_vqs=get('VDPA_ATTR_DEV_MGMTDEV_MAX_VQS'),
            supported_features=get('VDPA_ATTR_DEV_SUPPORTED_FEATURES'))


@dataclasses.dataclass(frozen=True, slots=True)
class VdpaDevice:
    """A vDPA device created through a management device."""

    name: str
    mgmtdev: str
    virtio_id: int
    vendor_id: int | None
    max_vqs: int | None
    max_vq_size: int | None
    min_vq_size: int | None

    @property
    def type(self) -> str:
        return _TYPE_NAMES.get(self.virtio_id, '<unknown type>')

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> 'VdpaDevice':
        get = attrs.get
        return cls(
            name=attrs['VDPA_ATTR_DEV_NAME'],
            mgmtdev=join_mgmtdev(get('VDPA_ATTR_MGMTDEV_BUS_NAME'),
                                 attrs['VDPA_ATTR_MGMTDEV_DEV_NAME']),
            virtio_id=attrs['VDPA_ATTR_DEV_ID'],
            vendor_id=get('VDPA_ATTR_DEV_VENDOR_ID'),
            max_vqs=get('VDPA_ATTR_DEV_MAX_VQS'),
            max_vq_size=get('VDPA_ATTR_DEV_MAX_VQ_SIZE'),
            min_vq_size=get('VDPA_ATTR_DEV_MIN_VQ_SIZE'))


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceConfig:
    """The virtio-net config space of a device, as the kernel reports it.

    ``negotiated_features`` is None until a driver negotiated (a device on
    vhost_vdpa with no VMM attached); ``max_vq_pairs`` is None unless the
    device offers F_MQ.
    """

    name: str
    virtio_id: int
    mac: str | None
    status: int | None
    mtu: int | None
    max_vq_pairs: int | None
    negotiated_features: int | None
    device_features: int | None

    @property
    def link_up(self) -> bool | None:
        if self.status is None:
            return None
        return bool(self.status & VIRTIO_NET_S_LINK_UP)

    @property
    def link_announce(self) -> bool | None:
        if self.status is None:
            return None
        return bool(self.status & VIRTIO_NET_S_ANNOUNCE)

    @property
    def negotiated_feature_names(self) -> list[str | int]:
        return feature_names(self.negotiated_features, self.virtio_id)

    @property
    def device_feature_names(self) -> list[str | int]:
        return feature_names(self.device_features, self.virtio_id)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> 'DeviceConfig':
        virtio_id = attrs['VDPA_ATTR_DEV_ID']
        device_features = attrs.get('VDPA_ATTR_DEV_FEATURES')
        if device_features is None and virtio_id == VIRTIO_ID_NET:
            # Linux 6.1 reported them as attribute 21.
            device_features = attrs.get('VDPA_ATTR_21')
        return cls(
            name=attrs['VDPA_ATTR_DEV_NAME'],
            virtio_id=virtio_id,
            mac=attrs.get('VDPA_ATTR_DEV_NET_CFG_MACADDR'),
            status=attrs.get('VDPA_ATTR_DEV_NET_STATUS'),
            mtu=attrs.get('VDPA_ATTR_DEV_NET_CFG_MTU'),
            max_vq_pairs=attrs.get('VDPA_ATTR_DEV_NET_CFG_MAX_VQP'),
            negotiated_features=attrs.get(
                'VDPA_ATTR_DEV_NEGOTIATED_FEATURES'),
            device_features=device_features)


@dataclasses.dataclass(frozen=True, slots=True)
class VendorQueueStats:
    """Vendor statistics of one virtqueue (``vdpa dev vstats show``)."""

    name: str
    queue_index: int
    max_vq_pairs: int | None
    negotiated_features: int | None
    #: (name, value) pairs in the order the driver reported them
    stats: tuple[tuple[str, int], ...]

    @classmethod
    def from_attrs(cls, attrs: Iterable[tuple[str, Any]]
                   ) -> 'VendorQueueStats':
        first: dict[str, Any] = {}
        stats = []
        pending = None
        for key, value in attrs:
            if key == 'VDPA_ATTR_DEV_VENDOR_ATTR_NAME':
                pending = value
            elif key == 'VDPA_ATTR_DEV_VENDOR_ATTR_VALUE' and pending:
                stats.append((pending, value))
                pending = None
            else:
                first.setdefault(key, value)
        return cls(
            name=first['VDPA_ATTR_DEV_NAME'],
            queue_index=first.get('VDPA_ATTR_DEV_QUEUE_INDEX', 0),
            max_vq_pairs=first.get('VDPA_ATTR_DEV_NET_CFG_MAX_VQP'),
            negotiated_features=first.get(
                'VDPA_ATTR_DEV_NEGOTIATED_FEATURES'),
            stats=tuple(stats))


#: The packet counters :class:`DeviceTraffic` knows, as drivers name them
#: in their vendor statistics (vdpa_sim_net on 6.12: "rx packets" ...
#: "rx drops" on queue 0, "tx packets" ... "tx drops" on queue 1).
TRAFFIC_COUNTERS = ('rx packets', 'rx bytes', 'rx errors', 'rx overruns',
                    'rx drops', 'tx packets', 'tx bytes', 'tx errors',
                    'tx drops')


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceTraffic:
    """A device's packet counters, summed over its virtqueues.

    A counter is None when no queue of the device reports it: vendor
    statistics are the driver's own (mlx5_vdpa reports descriptors, not
    packets). A frame vdpa_sim_net's receive filter rejects counts as an
    rx drop, a frame without a posted rx buffer as an rx overrun.
    """

    name: str
    rx_packets: int | None = None
    rx_bytes: int | None = None
    rx_errors: int | None = None
    rx_overruns: int | None = None
    rx_drops: int | None = None
    tx_packets: int | None = None
    tx_bytes: int | None = None
    tx_errors: int | None = None
    tx_drops: int | None = None

    @classmethod
    def from_queues(cls, name: str, queues: Iterable[VendorQueueStats]
                    ) -> 'DeviceTraffic':
        totals: dict[str, int] = {}
        for queue in queues:
            for stat, value in queue.stats:
                if stat in TRAFFIC_COUNTERS:
                    key = stat.replace(' ', '_')
                    totals[key] = totals.get(key, 0) + value
        return cls(name=name, **totals)

    @property
    def reported(self) -> bool:
        """Whether the driver reports any packet counter at all."""
        return any(getattr(self, c.replace(' ', '_')) is not None
                   for c in TRAFFIC_COUNTERS)
