"""Console scripts of nova-vdpa (status and inventory commands)."""
