"""What task code and apps import. The public names are re-exported by ``triggerfish``."""
