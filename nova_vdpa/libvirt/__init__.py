"""libvirt guest configuration for vDPA interfaces.

``config`` holds the pure Object <-> XML classes; ``designer`` holds the
policy that turns a port, a flavor and a device into such an object.
"""
