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

"""A live migration's XML, built as ``LibvirtVdpaDriver`` builds it (bed).

No nova-compute runs in the bed, so no ``LibvirtVdpaDriver`` is constructed
(Nova's driver needs its services); :class:`BedDriver` carries the parts
of it that :mod:`nova_vdpa.compute.migration` and the VIF driver use - the
real :class:`~nova_vdpa.compute.vif.LibvirtVdpaVIFDriver` on the real
allocator, the real :class:`~nova_vdpa.compute.incoming.Incoming` and a
libvirt connection - under the driver's attribute names. Everything below
calls the driver's own functions:

* the source guest's interface: the VIF driver's ``get_config`` for the
  port (a spawn: it allocates the port's device);
* the destination: :func:`nova_vdpa.compute.migration.prepare_destination`,
  what ``LibvirtVdpaDriver.pre_live_migration`` runs after Nova's, which
  makes the destination's device, reads its vhost backend and writes the
  migration record into the migrate VIF's profile. Only the database read
  of the migration in ``preparing`` state is answered here;
* the destination XML: Nova's ``get_updated_guest_xml`` with the VIF
  driver's ``get_config`` as ``get_vif_config``, inside
  :func:`nova_vdpa.compute.migration.building_destination_xml`, as
  ``LibvirtVdpaDriver._live_migration_operation`` runs Nova's.

One kernel serves both "hosts" here and device names are per port
(``nvdpa-<port>``), so the destination's device belongs to a second port
id; the record it writes is carried into the source's migration data as it
is (Nova carries the migration data back to the source over RPC). On two
real hosts both would be the same port's.
"""

import functools
from unittest import mock

from lxml import etree
from nova.network import model as network_model
from nova import objects
from nova.virt.libvirt import guest as libvirt_guest
from nova.virt.libvirt import migration as nova_migration
from os_vif import objects as os_vif_objects

from nova_vdpa.compute import incoming
from nova_vdpa.compute import migration
from nova_vdpa.compute import vif as vif_mod

objects.register_all()
os_vif_objects.register_all()  # nova_to_osvif_vif builds os-vif objects

VIRT_TYPE = 'qemu'
NETWORK = '3f1d2c4b-5a69-4788-9a0b-1c2d3e4f5a60'


class BedHost:
    """What the VIF driver uses of Nova's ``nova.virt.libvirt.host.Host``."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def get_connection(self):
        return self.conn

    def list_guests(self, only_running=True):
        import libvirt
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE if only_running \
            else 0
        return [libvirt_guest.Guest(dom)
                for dom in self.conn.listAllDomains(flags)]


class BedDriver:
    """``LibvirtVdpaDriver``'s attributes the migration code reads.

    :param conn: the host's libvirt connection.
    :param alloc: the host's allocator (its privsep daemon).
    :param hostname: the compute service's host name.
    """

    def __init__(self, conn, alloc, hostname: str) -> None:
        self._host = BedHost(conn)
        self.vdpa_allocator = alloc
        self.vif_driver = vif_mod.LibvirtVdpaVIFDriver(self._host, alloc)
        self.vdpa_incoming = incoming.Incoming()
        #: [nova_vdpa] live_migration_without_unplug, on
        self.vdpa_without_unplug = True
        self.vdpa_hostname = hostname


def nova_vif(port: str, vf: str, mac: str, mtu: int = 1500):
    """A vdpa port as Nova's network model has it (ML2/OVS, on ``vf``)."""
    network = network_model.Network(id=NETWORK, bridge='br-int', label='net',
                                    mtu=mtu, subnets=[])
    return network_model.VIF(
        id=port, address=mac, network=network, type='ovs',
        vnic_type=network_model.VNIC_TYPE_VDPA, details={},
        devname='tap' + port[:11], profile=binding_profile(vf))


def binding_profile(vf: str) -> dict:
    return {'pci_slot': vf, 'pci_vendor_info': '1af4:1041',
            'physical_network': 'physnet'}


def instance(uuid: str, flavor):
    return objects.Instance(uuid=uuid, flavor=flavor, system_metadata={},
                            image_ref=None)


def source_interface(driver: BedDriver, inst, vif):
    """The guest's interface at spawn: the VIF driver allocates the device."""
    return driver.vif_driver.get_config(inst, vif, inst.image_meta,
                                        inst.flavor, VIRT_TYPE)


def migrate_data(migration_uuid: str, vifs) -> objects.LibvirtLiveMigrateData:
    """Nova's migration data with ``vifs`` (``VIFMigrateData``)."""
    return objects.LibvirtLiveMigrateData(
        vifs=vifs, migration=objects.Migration(uuid=migration_uuid),
        bdms=[], serial_listen_addr=None, serial_listen_ports=[],
        block_migration=False)


def migrate_vif(port: str, source_vif, dest_vf: str):
    """The port's migrate VIF: its destination binding on ``dest_vf``."""
    return objects.VIFMigrateData(
        port_id=port, vnic_type=network_model.VNIC_TYPE_VDPA, vif_type='ovs',
        vif_details={}, profile=binding_profile(dest_vf), host='dest',
        source_vif=source_vif)


def prepare_destination(driver: BedDriver, inst, data) -> None:
    """``pre_live_migration``'s part of ours, on the destination.

    Nova's own part (plugging the VIFs into OVS, volumes) has nothing to
    do here. The migration is the one of ``data``, found in ``preparing``
    state (the database read is answered from ``data``).
    """
    with mock.patch.object(migration, '_preparing_migration',
                           return_value=data.migration.uuid):
        migration.prepare_destination(driver, None, inst, data)


def record_of(data, port: str) -> dict | None:
    """The migration record the destination wrote for ``port``, if any."""
    for v in data.vifs:
        if v.port_id == port:
            return v.profile.get(migration.PROFILE_KEY)
    return None


def destination_xml(driver: BedDriver, inst, dom, data) -> str:
    """The destination's domain XML, as the source's driver builds it."""
    get_vif_config = functools.partial(
        driver.vif_driver.get_config, instance=inst,
        image_meta=inst.image_meta, flavor=inst.flavor, virt_type=VIRT_TYPE)
    with migration.building_destination_xml(driver, inst, data):
        return nova_migration.get_updated_guest_xml(
            inst, libvirt_guest.Guest(dom), data, None,
            get_vif_config=get_vif_config)


def with_append(xml: str) -> str:
    """Both QEMUs append to the one serial file: one console, one count."""
    root = etree.fromstring(xml)
    for source in root.findall('./devices/serial/source'):
        source.set('append', 'on')
    return etree.tostring(root, encoding='unicode')
