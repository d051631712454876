"""nova-vdpa: a Nova libvirt driver plugin that allocates vDPA devices.

Importing this package has no side effects: options are registered by
:func:`nova_vdpa.conf.register_opts`, never at import time.
"""
