"""The Linux boundary: vdpa generic netlink, sysfs and devlink.

Modules here import no OpenStack library (no oslo.*, no nova): they speak in
typed dataclasses and raise only :mod:`nova_vdpa.exception` errors, so they
can be run and tested on their own against a real or a fake kernel.
"""
