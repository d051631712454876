"""Entry module for nova's driver loader.

nova-compute loads ``'nova.virt.' + CONF.compute_driver``, so with
``compute_driver = nova_vdpa.LibvirtVdpaDriver`` it imports this module and
looks the class up here. This tree deliberately has no ``nova/__init__.py``
or ``nova/virt/__init__.py``: the installed package only adds this
sub-package to nova's own ``nova.virt``.
"""
